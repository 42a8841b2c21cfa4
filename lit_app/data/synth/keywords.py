"""Synthetic keyword corpus in the Google Speech Commands layout, split by voice.

The folder it writes is read by the same :class:`~lit_app.data.speech_commands.SpeechCommands` reader as a
real copy of the corpus: one folder per word of 1 s, 16 kHz mono 16-bit WAVs named
``<voice hash>_nohash_<n>.wav``, ``validation_list.txt``, ``testing_list.txt`` and ``_background_noise_/``.
Validation and test voices never speak in the training split. ``manifest.csv`` holds every clip's settings.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lit_app import folders
from lit_app.data.synth import build
from lit_app.data.synth.corpus import (
    SPLITS,
    EngineShares,
    SyntheticCorpus,
    background,
    speaking_turns,
    split_voices,
    voicing,
)
from lit_app.data.synth.noise import noise_bank, noise_gain
from lit_app.data.synth.tts import Speaker, Voice, voice_catalogue
from lit_app.data.vocab import KEYWORDS_10, OTHER_WORDS

SAMPLE_RATE = 16000
KIND = "synthetic-keywords"


class SyntheticKeywordCorpus(SyntheticCorpus):
    """Builds (or resumes building) a synthetic Speech Commands corpus with espeak-ng and flite voices.

    Args:
        clips_per_keyword: clips of each keyword, over all splits.
        clips_per_other_word: clips of each other word (the ``_unknown_`` class of the 12-label task).
        keywords: the words spoken ``clips_per_keyword`` times.
        other_words: the words spoken ``clips_per_other_word`` times.
        engines: TTS engines to use (``espeak``, ``flite``, ``festival``, ``festival_accented``); ``None``: espeak,
            and flite when present.
        engine_shares: how each word's clips are shared: ``per_voice`` (every voice equally, so espeak-ng's
            hundreds of voices speak almost all of them), ``per_voice_shuffled`` (the same, in a random order of
            voices for each word: a word spoken fewer times than there are voices is heard in all of espeak-ng's
            accents) or ``per_engine`` (every engine equally).
        val_voice_fraction: share of each engine's voices (and of each word's clips) for validation.
        test_voice_fraction: share of each engine's voices (and of each word's clips) for testing; 1 (with
            ``val_voice_fraction: 0``) makes a test-only corpus, to measure a victim on engines it never heard.
        rate_range: espeak-ng speaking rate range, words per minute.
        pitch_range: espeak-ng base pitch range (0-99).
        stretch_range: flite and festival duration stretch range.
        level_db_range: peak level of the speech, dB below full scale.
        noise_probability: chance that a clip gets background noise.
        snr_db_range: signal-to-noise ratio range of that noise, dB.
        noise_seconds: length of each generated background-noise file.
        seed: everything about the corpus follows from it.
        num_workers: synthesis processes (0 renders in this process).
    """

    kind = KIND
    description = "synthesising keywords"

    def __init__(
        self,
        clips_per_keyword: int = 300,
        clips_per_other_word: int = 40,
        keywords: list[str] = list(KEYWORDS_10),
        other_words: list[str] = list(OTHER_WORDS),
        engines: list[str] | None = None,
        engine_shares: EngineShares = "per_voice",
        val_voice_fraction: float = 0.1,
        test_voice_fraction: float = 0.1,
        rate_range: tuple[int, int] = (120, 220),
        pitch_range: tuple[int, int] = (20, 80),
        stretch_range: tuple[float, float] = (0.85, 1.2),
        level_db_range: tuple[float, float] = (-25.0, -1.0),
        noise_probability: float = 0.8,
        snr_db_range: tuple[float, float] = (10.0, 40.0),
        noise_seconds: float = 30.0,
        seed: int = 0,
        num_workers: int = 2,
    ) -> None:
        overlap = set(keywords) & set(other_words)
        if overlap:
            raise ValueError(f"words listed both as keywords and other words: {sorted(overlap)}")
        self.settings = {
            "clips_per_keyword": clips_per_keyword,
            "clips_per_other_word": clips_per_other_word,
            "keywords": list(keywords),
            "other_words": list(other_words),
            "engines": sorted(engines) if engines is not None else None,
            "val_voice_fraction": val_voice_fraction,
            "test_voice_fraction": test_voice_fraction,
            "rate_range": list(rate_range),
            "pitch_range": list(pitch_range),
            "stretch_range": list(stretch_range),
            "level_db_range": list(level_db_range),
            "noise_probability": noise_probability,
            "snr_db_range": list(snr_db_range),
            "noise_seconds": noise_seconds,
            "seed": seed,
        }
        if engine_shares != "per_voice":  # recorded only when set, so corpora built before it still match
            self.settings["engine_shares"] = engine_shares
        self.num_workers = num_workers

    def plan(self) -> tuple[list[dict[str, Any]], dict[str, list[Voice]]]:
        """Every clip's settings, in a fixed order, and the voices of each split."""
        s = self.resolved_settings()
        rng = np.random.default_rng(s["seed"])
        voices = split_voices(voice_catalogue(s["engines"]), s["val_voice_fraction"], s["test_voice_fraction"], rng)
        counts = {word: s["clips_per_keyword"] for word in s["keywords"]}
        counts.update({word: s["clips_per_other_word"] for word in s["other_words"]})
        specs = []
        for word in sorted(counts):
            n_test = round(counts[word] * s["test_voice_fraction"])
            n_val = round(counts[word] * s["val_voice_fraction"])
            per_split = {"train": counts[word] - n_test - n_val, "validation": n_val, "testing": n_test}
            for split in SPLITS:
                if not per_split[split]:  # a test-only corpus (drawing nothing keeps other corpora's draws)
                    continue
                takes: Counter[Voice] = Counter()
                for voice in speaking_turns(voices[split], per_split[split], rng, s.get("engine_shares", "per_voice")):
                    take = takes[voice]
                    takes[voice] += 1
                    noisy = rng.random() < s["noise_probability"]
                    specs.append({
                        "path": f"{word}/{voice.short_hash}_nohash_{take}.wav",
                        "word": word,
                        "split": split,
                        "voice": voice.id,
                        **voicing(rng, s),
                        "shift": round(float(rng.random()), 4),
                        **background(rng, s, noisy),
                    })
        return specs, voices

    def renderer(self) -> Callable[..., int]:
        return render_keyword_clips

    def write_index(self, root: Path, specs: list[dict[str, Any]], voices: dict[str, list[Voice]]) -> None:
        for split, filename in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
            listed = sorted(spec["path"] for spec in specs if spec["split"] == split)
            (root / filename).write_text("".join(f"{path}\n" for path in listed))
        folders.write_manifest(root / folders.MANIFEST_FILE, specs)
        per_split: dict[str, Counter[str]] = defaultdict(Counter)
        for spec in specs:
            per_split[spec["split"]][spec["word"]] += 1
        folders.finish_folder(root, {
            "clips": len(specs),
            "clips_per_split": {split: sum(c.values()) for split, c in per_split.items()},
            "voices": {split: [v.id for v in vs] for split, vs in voices.items()},
        })


def render_keyword_clip(speaker: Speaker, spec: dict[str, Any], root: str) -> np.ndarray:
    engine, name = spec["voice"].split(":", 1)
    speech = speaker.speak(spec["word"], Voice(engine, name), spec["rate"], spec["pitch"], spec["stretch"])
    if speech.size > SAMPLE_RATE:
        speech = speech[:SAMPLE_RATE].copy()
        speech[-160:] *= np.linspace(1.0, 0.0, 160, dtype=np.float32)
    speech *= 10.0 ** (spec["level_db"] / 20.0) / np.abs(speech).max()
    clip = np.zeros(SAMPLE_RATE, dtype=np.float32)
    offset = int(spec["shift"] * (SAMPLE_RATE - speech.size))
    clip[offset : offset + speech.size] = speech
    if spec["noise"]:
        bank = noise_bank(root, spec["noise"])
        start = int(spec["noise_offset"] * (bank.size - SAMPLE_RATE))
        segment = bank[start : start + SAMPLE_RATE]
        clip += noise_gain(float(np.mean(speech.astype(np.float64) ** 2)), segment, float(spec["snr_db"])) * segment
    return np.clip(clip, -1.0, 1.0)


render_keyword_clips = functools.partial(build.render_clips, render_keyword_clip)
