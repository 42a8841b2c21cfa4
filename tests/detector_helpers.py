"""Tiny detection datasets for the detector tests: espeak-ng speech, and perturbed copies of it.

Each set is a generic class-folder layout (``normal/<id>.wav``, ``adversarial/<attack>/<id>.wav``); an
adversarial clip keeps its source's file stem, so the data module keeps the pair in one split.

- ``white``: a dense perturbation confined to 4-8 kHz at a fixed dB_x (like a C&W perturbation, which
  spreads over the whole clip);
- ``black``: sparse bounded impulses on a few samples (like the genetic attack's mutations);
- ``noise``: white Gaussian noise at the SNR of the ``white`` perturbation (the noise control).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_app.audio.io import write_wav

PHRASES = [
    "yes", "no", "turn left", "stop the music", "open the door", "go home now", "seven", "right", "good morning",
    "call my sister", "down", "play some jazz", "what time is it", "off", "lights on", "up", "dim the lamp",
    "bed", "happy birthday", "read the news", "left", "set an alarm", "on", "go",
]
VOICES = ["en+m3", "en-us+f2", "en-gb-scotland+m1", "en-029+f4"]
KINDS = ("white", "black", "noise")


def band_noise(samples: int, rng: np.random.Generator, low_hz: float, high_hz: float, rate: int = 16000) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    freqs = np.fft.rfftfreq(samples, 1.0 / rate)
    spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0.0
    noise = np.fft.irfft(spectrum, n=samples)
    return noise / (np.abs(noise).max() + 1e-12)


def perturb(clean: np.ndarray, kind: str, rng: np.random.Generator, db_x: float = -24.0) -> np.ndarray:
    peak = np.abs(clean).max()
    if kind == "white":
        delta = band_noise(clean.size, rng, 4000.0, 8000.0) * peak * 10 ** (db_x / 20)
    elif kind == "black":
        delta = np.zeros_like(clean)
        hits = rng.random(clean.size) < 0.02
        delta[hits] = rng.uniform(-1.0, 1.0, hits.sum()) * peak * 10 ** ((db_x + 6) / 20)
    elif kind == "noise":
        reference = band_noise(clean.size, rng, 4000.0, 8000.0) * peak * 10 ** (db_x / 20)
        gaussian = rng.standard_normal(clean.size)
        delta = gaussian * np.sqrt(np.mean(reference**2) / np.mean(gaussian**2))
    else:
        raise ValueError(kind)
    return np.clip(clean + delta, -1.0, 1.0).astype(np.float32)


def speak_all(count: int) -> list[np.ndarray]:
    from lit_app.data.synth.tts import Speaker, Voice

    speaker = Speaker(16000)
    try:
        clips = []
        for i in range(count):
            audio = speaker.speak(PHRASES[i % len(PHRASES)], Voice("espeak", VOICES[i % len(VOICES)]))
            clips.append((0.5 * audio / np.abs(audio).max()).astype(np.float32))
        return clips
    finally:
        speaker.close()


def build_detection_sets(root: Path, count: int = 24, kinds: tuple[str, ...] = KINDS, seed: int = 0) -> dict[str, Path]:
    """One class-folder set per kind under ``root/<kind>``, sharing the same normal clips."""
    clips = speak_all(count)
    rng = np.random.default_rng(seed)
    sets = {}
    for kind in kinds:
        base = root / kind
        for i, clean in enumerate(clips):
            write_wav(base / "normal" / f"clip{i:03d}.wav", clean)
            write_wav(base / "adversarial" / kind / f"clip{i:03d}.wav", perturb(clean, kind, rng))
        sets[kind] = base
    return sets


@pytest.fixture(scope="session")
def detection_sets(tmp_path_factory) -> dict[str, Path]:
    """Three tiny generic-layout sets (white, black, noise), 24 normal + 24 perturbed clips each."""
    return build_detection_sets(tmp_path_factory.mktemp("detection"))
