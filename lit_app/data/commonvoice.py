"""Reader for the Mozilla Common Voice folder layout (one language of a release).

Layout: ``<root>/clips/*.mp3`` and tab-separated listings ``train.tsv``, ``dev.tsv``, ``test.tsv`` (also
``validated.tsv``, ``other.tsv``...) whose header names at least ``client_id``, ``path`` and ``sentence``.
Clips are 48 kHz MP3s; soundfile decodes them and the audio core resamples to 16 kHz.

A listed path must lie inside ``clips/``, each clip is listed once per listing, and the release's disjoint
splits (``train``, ``dev``, ``test``) share no clip; anything else is an error naming the rows.
"""

from __future__ import annotations

import csv
import functools
import sys
from pathlib import Path

from lit_app.data.utterances import Utterance
from lit_app.paths import ListedPathError, inside_base

SPLITS = ("train", "dev", "test", "validated", "other", "invalidated")
#: Listings that must share no clip (``validated`` holds all three by design).
DISJOINT_SPLITS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")


def read_split(root: str | Path, split: str) -> list[Utterance]:
    """Every utterance listed in ``<root>/<split>.tsv``, in listing order.

    Raises:
        FileNotFoundError: the listing or the clips folder is missing.
        ValueError: the listing lacks a required column (the message names the file).
        lit_app.paths.ListedPathError: a path outside ``clips/``, a clip listed twice, or a clip also listed in
            another of :data:`DISJOINT_SPLITS` (the message names both rows).
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
    utterances = []
    first: dict[Path, str] = {}
    for where, row in read_rows(listing):
        name = row["path"]
        if not name.endswith(".mp3"):
            name += ".mp3"  # early releases list clip names without the extension
        path = inside_base(clips, name, where)
        if path in first:
            raise ListedPathError(f"{first[path]} and {where}: {name} is listed twice; remove one row.")
        first[path] = where
        utterances.append(
            Utterance(id=Path(name).stem, path=clips / name, transcript=row["sentence"] or "", speaker=row["client_id"])
        )
    if split in DISJOINT_SPLITS:
        check_not_in_other_splits(root, split, first)
    return utterances


def read_rows(listing: Path) -> list[tuple[str, dict[str, str]]]:
    """The rows of a listing, each with its ``file:line`` for messages. Reading the three splits reads each listing
    once: the disjointness check of every split reads the other two, and a listing's rows are kept while the file is
    unchanged (same size and modification time).

    Raises:
        ValueError: a required column is missing.
    """
    status = listing.stat()
    return list(_listing_rows(str(listing), status.st_mtime_ns, status.st_size))


@functools.lru_cache(maxsize=8)
def _listing_rows(listing: str, mtime_ns: int, size: int) -> tuple[tuple[str, dict[str, str]], ...]:
    csv.field_size_limit(sys.maxsize)
    with open(listing, newline="", encoding="utf-8") as handle:
        # Sentences contain quotes that are not CSV quoting: read fields verbatim.
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{listing}: missing column(s) {missing} (header: {reader.fieldnames}). Is this a Common Voice listing?"
            )
        return tuple((f"{listing}:{reader.line_num}", row) for row in reader)


def check_not_in_other_splits(root: Path, split: str, listed: dict[Path, str]) -> None:
    """Refuse clips of ``split`` that another disjoint split lists too: they would leak into its evaluation.

    Raises:
        lit_app.paths.ListedPathError: naming both rows.
    """
    clips = (root / "clips").resolve()
    for other in DISJOINT_SPLITS:
        listing = root / f"{other}.tsv"
        if other == split or not listing.is_file():
            continue
        for where, row in read_rows(listing):
            name = row["path"] if row["path"].endswith(".mp3") else row["path"] + ".mp3"
            path = (clips / name).resolve()
            if path in listed:
                raise ListedPathError(f"{listed[path]} and {where}: {name} is listed in both {split}.tsv and "
                                      f"{other}.tsv, so it would leak between splits; keep it in one.")
