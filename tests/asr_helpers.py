"""Tiny speech-recognition corpora for the ASR tests: a synthetic one and fake LibriSpeech/Common Voice folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

TINY_SENTENCES = dict(num_sentences=40, val_sentence_fraction=0.1, test_sentence_fraction=0.1, engines=["espeak"],
                      noise_seconds=3.0, num_workers=0)


@pytest.fixture(scope="session")
def tiny_sentences(tmp_path_factory) -> Path:
    """A 40-sentence synthetic corpus (espeak-ng only). The fixed folder lets every test module share one build:
    a second build of a complete corpus returns at once."""
    from lit_app.data.synth.sentences import SyntheticSentenceCorpus

    root = tmp_path_factory.getbasetemp() / "asr_tiny_sentences"
    return SyntheticSentenceCorpus(**TINY_SENTENCES).build(root, show_progress=False)


def tone(seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


LIBRI_TEXT = {
    "dev-clean": ["HELLO WORLD", "THE CAT'S HAT", "GOOD MORNING TO YOU"],
    "test-clean": ["OPEN THE DOOR", "STOP", "TURN LEFT NOW"],
    "train-clean-100": ["A BIG RED DOG", "WE WENT HOME", "I LIKE TEA", "IT IS LATE", "YES PLEASE", "NO THANKS"],
}


def make_librispeech(root: Path, texts: dict[str, list[str]] = LIBRI_TEXT) -> Path:
    """``root/LibriSpeech/<split>/<speaker>/<chapter>/`` with FLAC clips and .trans.txt listings."""
    base = root / "LibriSpeech"
    for s, (split, lines) in enumerate(sorted(texts.items())):
        for i, text in enumerate(lines):
            speaker, chapter = 100 + s * 10 + i % 2, 7
            folder = base / split / str(speaker) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            utterance = f"{speaker}-{chapter}-{i:04d}"
            sf.write(folder / f"{utterance}.flac", tone(0.8 + 0.2 * i, 16000, s * 100 + i), 16000)
            with open(folder / f"{speaker}-{chapter}.trans.txt", "a") as listing:
                listing.write(f"{utterance} {text}\n")
    return base


CV_TEXT = {
    "train": ["Hello, world!", "It's “fine”.", "Good morning", "Well-known song", "Yes please", "No thanks"],
    "dev": ["Open the door.", "Stop!"],
    "test": ["Turn left now", "Café au lait"],
}


def make_commonvoice(root: Path, texts: dict[str, list[str]] = CV_TEXT) -> Path:
    """A Common Voice language folder: 48 kHz MP3 clips and train/dev/test.tsv listings."""
    base = root / "cv" / "en"
    (base / "clips").mkdir(parents=True)
    for s, (split, lines) in enumerate(sorted(texts.items())):
        rows = ["client_id\tpath\tsentence_id\tsentence\tup_votes\tdown_votes\tage\tgender\taccents"]
        for i, text in enumerate(lines):
            name = f"common_voice_en_{s}{i:03d}.mp3"
            sf.write(base / "clips" / name, tone(0.7 + 0.1 * i, 48000, s * 100 + i), 48000, format="MP3")
            rows.append(f"client{i % 3}\t{name}\tsid{i}\t{text}\t2\t0\t\t\t")
        (base / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return base
