"""Reader for the LibriSpeech folder layout (as unpacked from the OpenSLR archives).

Layout: ``<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac`` with one
``<speaker>-<chapter>.trans.txt`` per chapter, each line ``<utterance id> <TRANSCRIPT>``. ``root`` is the
``LibriSpeech`` folder holding split folders such as ``train-clean-100``, ``dev-clean`` and ``test-clean``.
"""

from __future__ import annotations

import re
from pathlib import Path

from lit_app.data.utterances import Utterance

#: ``<speaker>-<chapter>-<utterance>``: letters, digits and underscores only, so an id cannot name a path elsewhere.
UTTERANCE_ID = re.compile(r"\w+-\w+-\w+")

SPLITS = (
    "train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other",
)


def read_split(root: str | Path, split: str) -> list[Utterance]:
    """Every utterance of one LibriSpeech split, in file order (speaker, chapter, utterance).

    Raises:
        FileNotFoundError: the split folder is missing, holds no transcripts, or a listed .flac is missing.
        ValueError: a transcript line is malformed or repeats an utterance (the message gives file and line).
    """
    folder = Path(root) / split
    if not folder.is_dir():
        present = sorted(p.name for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []
        raise FileNotFoundError(
            f"{folder}: no such LibriSpeech split. Point root at the LibriSpeech folder that holds the split "
            f"folders (found there: {present or 'nothing'}) and name splits such as {', '.join(SPLITS[:1] + SPLITS[3:6])}."
        )
    utterances = []
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(
            f"{folder}: no <speaker>/<chapter>/*.trans.txt files; this is not a LibriSpeech split folder."
        )
    first: dict[str, str] = {}
    for listing in transcripts:
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utterance_id, _, text = line.strip().partition(" ")
            parts = utterance_id.split("-")
            if not UTTERANCE_ID.fullmatch(utterance_id):
                raise ValueError(
                    f"{listing}:{number}: expected '<speaker>-<chapter>-<utterance> TEXT', got {line!r}. Fix the line."
                )
            if utterance_id in first:
                raise ValueError(f"{first[utterance_id]} and {listing}:{number}: utterance {utterance_id} is listed "
                                 "twice; remove one line.")
            first[utterance_id] = f"{listing}:{number}"
            audio = listing.parent / f"{utterance_id}.flac"
            if not audio.is_file():
                raise FileNotFoundError(
                    f"{audio}: listed in {listing}:{number} but missing. Restore it, or delete the line."
                )
            utterances.append(Utterance(id=utterance_id, path=audio, transcript=text, speaker=parts[0]))
    return utterances
