"""Synthetic sentence corpus for speech recognition, split by voice and by sentence.

Sentences from the built-in grammar (:mod:`lit_app.data.synth.phrases`) are spoken by espeak-ng and flite
voices at varied rate, pitch and level, with short random silences around them and light background noise
on some clips. Each sentence belongs to one split and each voice to one split, so the test split holds
sentences never spoken in training, by voices never heard in training.

Folder: ``<split>/<voice hash>/<utterance id>.wav`` (16 kHz mono 16-bit) for the splits ``train``,
``validation`` and ``testing``; ``manifest.csv`` lists every clip with its transcript and settings;
``_background_noise_/`` holds the noise bank; ``corpus.json`` the build settings.
"""

from __future__ import annotations

import csv
import functools
from collections import Counter
from collections.abc import Callable, Iterator
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
    held_out_counts,
    speaking_turns,
    split_voices,
    voicing,
)
from lit_app.data.synth.noise import noise_bank, noise_gain
from lit_app.data.synth.phrases import generate_sentences, vocabulary
from lit_app.data.synth.tts import Speaker, Voice, voice_catalogue
from lit_app.data.utterances import Utterance
from lit_app.paths import inside_base

SAMPLE_RATE = 16000
KIND = "synthetic-sentences"


class SyntheticSentenceCorpus(SyntheticCorpus):
    """Builds (or resumes building) the synthetic sentence corpus.

    Args:
        num_sentences: distinct sentences over all splits.
        speakers_per_sentence: voices that speak each sentence (from that sentence's split).
        val_sentence_fraction: share of the sentences held out for validation.
        test_sentence_fraction: share of the sentences held out for testing; 1 (with ``val_sentence_fraction: 0``,
            ``val_voice_fraction: 0`` and ``test_voice_fraction: 1``) makes a test-only corpus.
        val_voice_fraction: share of each engine's voices held out for validation.
        test_voice_fraction: share of each engine's voices held out for testing.
        engines: TTS engines (``espeak``, ``flite``, ``festival``; not ``festival_accented``); ``None``: espeak,
            and flite when present.
        engine_shares: how a split's sentences are shared: ``per_voice`` (every voice equally, so espeak-ng's
            hundreds of voices speak almost all of them), ``per_voice_shuffled`` (the same, in a random order of
            voices: fewer sentences than voices are heard in all of espeak-ng's accents) or ``per_engine`` (every
            engine equally).
        max_words: longest sentence in words.
        rate_range: espeak-ng speaking rate range, words per minute.
        pitch_range: espeak-ng base pitch range (0-99).
        stretch_range: flite and festival duration stretch range.
        level_db_range: peak level of the speech, dB below full scale.
        silence_range: silence before and after the speech, seconds (each drawn separately).
        noise_probability: chance that a clip gets background noise.
        snr_db_range: signal-to-noise ratio range of that noise, dB.
        noise_seconds: length of each generated background-noise file.
        seed: everything about the corpus follows from it.
        num_workers: synthesis processes (0 renders in this process).
    """

    kind = KIND
    description = "synthesising sentences"

    def __init__(
        self,
        num_sentences: int = 6000,
        speakers_per_sentence: int = 1,
        val_sentence_fraction: float = 0.05,
        test_sentence_fraction: float = 0.05,
        val_voice_fraction: float = 0.1,
        test_voice_fraction: float = 0.1,
        engines: list[str] | None = None,
        engine_shares: EngineShares = "per_voice",
        max_words: int = 12,
        rate_range: tuple[int, int] = (130, 210),
        pitch_range: tuple[int, int] = (20, 80),
        stretch_range: tuple[float, float] = (0.85, 1.2),
        level_db_range: tuple[float, float] = (-20.0, -1.0),
        silence_range: tuple[float, float] = (0.05, 0.3),
        noise_probability: float = 0.5,
        snr_db_range: tuple[float, float] = (15.0, 40.0),
        noise_seconds: float = 30.0,
        seed: int = 0,
        num_workers: int = 2,
    ) -> None:
        if speakers_per_sentence < 1:
            raise ValueError(f"speakers_per_sentence must be at least 1, got {speakers_per_sentence}")
        if engines is not None and "festival_accented" in engines:
            raise ValueError("festival_accented speaks the Speech Commands words only (accents.py respells them), "
                             "not sentences: drop it from the sentence corpus's engines")
        for split, voice_fraction, sentence_fraction in (("val", val_voice_fraction, val_sentence_fraction),
                                                         ("test", test_voice_fraction, test_sentence_fraction)):
            # A test-only corpus's settings are checked as it is planned (held_out_counts).
            if test_sentence_fraction < 1 and (voice_fraction == 0) != (sentence_fraction == 0):
                raise ValueError(f"{split}_voice_fraction is {voice_fraction} and {split}_sentence_fraction "
                                 f"{sentence_fraction}: a split needs both voices and sentences, or neither")
        self.settings = {
            "num_sentences": num_sentences,
            "speakers_per_sentence": speakers_per_sentence,
            "val_sentence_fraction": val_sentence_fraction,
            "test_sentence_fraction": test_sentence_fraction,
            "val_voice_fraction": val_voice_fraction,
            "test_voice_fraction": test_voice_fraction,
            "engines": sorted(engines) if engines is not None else None,
            "max_words": max_words,
            "rate_range": list(rate_range),
            "pitch_range": list(pitch_range),
            "stretch_range": list(stretch_range),
            "level_db_range": list(level_db_range),
            "silence_range": list(silence_range),
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
        sentences = generate_sentences(s["num_sentences"], rng, s["max_words"])
        n_test, n_val = held_out_counts(len(sentences), s["val_sentence_fraction"], s["test_sentence_fraction"],
                                        "sentences", "sentence_fraction")
        order = rng.permutation(len(sentences))
        sentence_split = {}
        for rank, index in enumerate(order):
            sentence_split[int(index)] = "testing" if rank < n_test else "validation" if rank < n_test + n_val else "train"
        specs = []
        turns = self.speaking_turns(voices, sentence_split, rng)
        for index, text in enumerate(sentences):
            split = sentence_split[index]
            for _ in range(s["speakers_per_sentence"]):
                voice = next(turns[split])
                noisy = rng.random() < s["noise_probability"]
                utterance_id = f"s{index:06d}-{voice.short_hash}"
                specs.append({
                    "id": utterance_id,
                    "path": f"{split}/{voice.short_hash}/{utterance_id}.wav",
                    "split": split,
                    "sentence": index,
                    "transcript": text,
                    "voice": voice.id,
                    **voicing(rng, s),
                    "lead_s": round(float(rng.uniform(*s["silence_range"])), 3),
                    "trail_s": round(float(rng.uniform(*s["silence_range"])), 3),
                    **background(rng, s, noisy),
                })
        return specs, voices

    def speaking_turns(self, voices: dict[str, list[Voice]], sentence_split: dict[int, str],
                       rng: np.random.Generator) -> dict[str, Iterator[Voice]]:
        """Each split's voices in speaking order: turns from a random start, every voice (or engine) equally."""
        s = self.resolved_settings()
        count = Counter(sentence_split.values())
        # Every split with voices draws its start, sentences or not: the draws of corpora built before
        # ``engine_shares``, kept so that they still match.
        return {split: iter(speaking_turns(voices[split], count[split] * s["speakers_per_sentence"], rng,
                                           s.get("engine_shares", "per_voice")))
                for split in SPLITS if voices[split]}

    def renderer(self) -> Callable[..., int]:
        return render_sentence_clips

    def write_index(self, root: Path, specs: list[dict[str, Any]], voices: dict[str, list[Voice]]) -> None:
        import soundfile as sf

        rows = [{**spec, "num_samples": sf.info(str(root / spec["path"])).frames} for spec in specs]
        folders.write_manifest(root / folders.MANIFEST_FILE, rows)
        counts = Counter(spec["split"] for spec in specs)
        sentences = {split: len({spec["sentence"] for spec in specs if spec["split"] == split}) for split in SPLITS}
        folders.finish_folder(root, {
            "clips": len(specs),
            "clips_per_split": dict(counts),
            "sentences_per_split": sentences,
            "hours": round(sum(row["num_samples"] for row in rows) / SAMPLE_RATE / 3600, 3),
            "vocabulary_size": len(vocabulary()),
            "voices": {split: [v.id for v in vs] for split, vs in voices.items()},
        })


def read_corpus(root: str | Path) -> dict[str, list[Utterance]]:
    """The utterances of a built corpus, by split (``train``, ``validation``, ``testing``), from its manifest.

    Raises:
        FileNotFoundError: ``root`` holds no finished sentence corpus.
        lit_app.paths.ListedPathError: a manifest row names a file outside ``root``.
    """
    root = Path(root)
    info = folders.read_corpus_info(root)
    manifest = root / folders.MANIFEST_FILE
    if info is None or info.get("kind") != KIND or not info.get("complete") or not manifest.is_file():
        raise FileNotFoundError(
            f"{root}: no finished synthetic sentence corpus here. Give the data module a `synthesize` section "
            "(SyntheticSentenceCorpus) to build it, or rerun the build to finish an interrupted one."
        )
    splits: dict[str, list[Utterance]] = {split: [] for split in SPLITS}
    with open(manifest, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            inside_base(root, row["path"], f"{manifest}:{line}")  # refused if it leads out of the corpus
            splits[row["split"]].append(Utterance(
                id=row["id"],
                path=root / row["path"],
                transcript=row["transcript"],
                speaker=row["voice"],
                seconds=int(row["num_samples"]) / SAMPLE_RATE,
            ))
    return splits


def render_sentence_clip(speaker: Speaker, spec: dict[str, Any], root: str) -> np.ndarray:
    engine, name = spec["voice"].split(":", 1)
    speech = speaker.speak(spec["transcript"], Voice(engine, name), spec["rate"], spec["pitch"], spec["stretch"])
    speech = speech * (10.0 ** (spec["level_db"] / 20.0) / np.abs(speech).max())
    lead, trail = round(spec["lead_s"] * SAMPLE_RATE), round(spec["trail_s"] * SAMPLE_RATE)
    clip = np.concatenate([np.zeros(lead, np.float32), speech.astype(np.float32), np.zeros(trail, np.float32)])
    if spec["noise"]:
        bank = noise_bank(root, spec["noise"])
        if bank.size < clip.size:
            bank = np.tile(bank, clip.size // bank.size + 1)
        start = int(spec["noise_offset"] * (bank.size - clip.size))
        segment = bank[start : start + clip.size]
        clip = clip + noise_gain(float(np.mean(speech.astype(np.float64) ** 2)), segment, float(spec["snr_db"])) * segment
    return np.clip(clip, -1.0, 1.0)


render_sentence_clips = functools.partial(build.render_clips, render_sentence_clip)
