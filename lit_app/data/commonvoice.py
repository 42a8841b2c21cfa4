"""Reader for the Mozilla Common Voice folder layout (one language of a release).

Layout: ``<root>/clips/*.mp3`` and tab-separated listings ``train.tsv``, ``dev.tsv``, ``test.tsv`` (also
``validated.tsv``, ``other.tsv``...) whose header names at least ``client_id``, ``path`` and ``sentence``.
Clips are 48 kHz MP3s; soundfile decodes them and the audio core resamples to 16 kHz.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from lit_app.data.utterances import Utterance

SPLITS = ("train", "dev", "test", "validated", "other", "invalidated")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")


def read_split(root: str | Path, split: str) -> list[Utterance]:
    """Every utterance listed in ``<root>/<split>.tsv``, in listing order.

    Raises:
        FileNotFoundError: the listing or the clips folder is missing.
        ValueError: the listing lacks a required column (the message names the file).
    """
    root = Path(root)
    listing = root / f"{split}.tsv"
    if not listing.is_file():
        present = sorted(p.name for p in root.glob("*.tsv")) if root.is_dir() else []
        raise FileNotFoundError(
            f"{listing}: no such Common Voice listing. Point root at a language folder of a Common Voice release "
            f"(the one with clips/ and train.tsv; found there: {present or 'nothing'})."
        )
    clips = root / "clips"
    if not clips.is_dir():
        raise FileNotFoundError(f"{clips}: missing. A Common Voice language folder keeps its MP3s in clips/.")
    csv.field_size_limit(sys.maxsize)
    utterances = []
    with open(listing, newline="", encoding="utf-8") as handle:
        # Sentences contain quotes that are not CSV quoting: read fields verbatim.
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{listing}: missing column(s) {missing} (header: {reader.fieldnames}). Is this a Common Voice listing?"
            )
        for row in reader:
            name = row["path"]
            if not name.endswith(".mp3"):
                name += ".mp3"  # early releases list clip names without the extension
            utterances.append(
                Utterance(id=Path(name).stem, path=clips / name, transcript=row["sentence"] or "", speaker=row["client_id"])
            )
    return utterances
