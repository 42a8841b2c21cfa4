"""A clean clip that an attack can start from: what a victim's data module hands to the adversarial-set builder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceClip:
    """A clean clip that can be attacked or served as a normal example.

    Every source clip keeps the split its corpus gives it (mapped to ``train``/``val``/``test``), so the
    detection splits follow the source corpus: its test voices stay unseen in detection training too.

    Args:
        id: unique within the source corpus (e.g. ``yes/0a7c2a8d_nohash_0`` or an utterance id).
        path: the audio file.
        split: detection split (``train``, ``val`` or ``test``).
        source_split: the split's name in the source corpus.
        label: the true class name or the normalised transcript.
        group: speaker or voice (empty when unknown).
        num_samples: length at 16 kHz (approximate for files at other rates).
    """

    id: str
    path: str
    split: str
    source_split: str
    label: str
    group: str
    num_samples: int
