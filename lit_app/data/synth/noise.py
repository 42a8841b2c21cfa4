"""Background noises for synthetic corpora, and mixing at a chosen signal-to-noise ratio."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from lit_app.audio.noise import snr_gain
from lit_app.data.vocab import BACKGROUND_NOISE_FOLDER

NOISE_KINDS = ("white", "pink", "brown", "blue", "hum")


def coloured_noise(kind: str, num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with a power spectrum of slope 0 (white), -1 (pink), -2 (brown), +1 (blue), or mains hum.

    Returned at a peak of 0.5 full scale, float32.
    """
    if kind == "hum":
        t = np.arange(num_samples) / sample_rate
        base = 50.0 + rng.uniform(-0.5, 0.5)
        signal = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi)) for h in range(1, 8))
        signal = signal + 0.05 * rng.standard_normal(num_samples)
    else:
        slope = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0}[kind]
        spectrum = np.fft.rfft(rng.standard_normal(num_samples))
        freqs = np.fft.rfftfreq(num_samples, d=1.0 / sample_rate)
        freqs[0] = freqs[1]
        spectrum *= freqs ** (slope / 2.0)
        signal = np.fft.irfft(spectrum, n=num_samples)
    signal = signal - signal.mean()
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def write_background_noise(folder: Path, seconds: float, seed: int, sample_rate: int = 16000) -> None:
    """Write one file of each of :data:`NOISE_KINDS` into ``folder`` (a corpus's ``_background_noise_``); files
    already there are kept."""
    from lit_app.audio.io import write_wav

    rng = np.random.default_rng([seed, 1])
    for kind in NOISE_KINDS:
        noise = coloured_noise(kind, int(seconds * sample_rate), sample_rate, rng)
        path = folder / f"{kind}_noise.wav"
        if not path.exists():
            write_wav(path, noise)


@functools.cache
def noise_bank(root: str, kind: str) -> np.ndarray:
    """The background noise ``kind`` of the corpus in ``root``, read once per process."""
    import soundfile as sf

    samples, _ = sf.read(Path(root) / BACKGROUND_NOISE_FOLDER / f"{kind}_noise.wav", dtype="float32")
    return samples


def noise_gain(signal_power: float, noise: np.ndarray, snr_db: float) -> float:
    """Factor for ``noise`` so that ``signal_power`` / its power equals ``snr_db``; 0 for silent inputs."""
    noise_power = float(np.mean(noise.astype(np.float64) ** 2))
    if signal_power <= 0.0 or noise_power <= 0.0:
        return 0.0
    return float(snr_gain(signal_power, noise_power, snr_db))
