"""The clean clips an adversarial corpus is made from, listed from a source data module or another corpus.

Every source clip keeps the split its corpus gives it (mapped to ``train``/``val``/``test``), so the
detection splits follow the source corpus: its test voices stay unseen in detection training too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lit_app.base import LitAppDataModule
from lit_app.data.vocab import SILENCE, UNKNOWN

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# Speech Commands names its splits differently from the detection splits.
KWS_SPLITS = {"train": "train", "validation": "val", "testing": "test"}


@dataclass(frozen=True)
class SourceClip:
    """A clean clip that can be attacked or served as a normal example.

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


def list_sources(source: LitAppDataModule) -> list[SourceClip]:
    """Every usable clip of a keyword-spotting or speech-recognition data module, building its corpus first
    if the module is set up to synthesise one.

    Raises:
        TypeError: the data module is of a kind attacks cannot use.
    """
    from lit_app.data.asr import ASRDataModule
    from lit_app.data.kws import KWSDataModule

    source.prepare_data()
    if isinstance(source, KWSDataModule):
        return _keyword_clips(source)
    if isinstance(source, ASRDataModule):
        return _utterances(source)
    raise TypeError(f"cannot attack clips of a {type(source).__name__}; use a KWSDataModule or an ASRDataModule")


def _keyword_clips(source: LitAppDataModule) -> list[SourceClip]:
    from lit_app.data import speech_commands as sc

    keywords = {label for label in source.labels if label not in (SILENCE, UNKNOWN)}
    clips = []
    for split, listed in sc.scan(source.root).items():
        for clip in listed:
            if clip.word in keywords:
                clips.append(SourceClip(
                    id=clip.path.removesuffix(".wav"),
                    path=str(Path(source.root) / clip.path),
                    split=KWS_SPLITS[split],
                    source_split=split,
                    label=clip.word,
                    group=clip.speaker,
                    num_samples=sc.CLIP_SAMPLES,
                ))
    return clips


def _utterances(source: LitAppDataModule) -> list[SourceClip]:
    from lit_app.data.utterances import with_durations

    clips = []
    for split in SPLITS:
        for source_split in source.splits[split]:
            utterances, bad = with_durations(source.read_split(source_split), skip_bad=True)
            for message in bad:
                log.warning("left out of the attack sources: %s", message)
            for u in utterances:
                try:
                    transcript = source.alphabet.normalise(u.transcript, str(u.path))
                except ValueError as err:
                    log.warning("left out of the attack sources: %s", err)
                    continue
                clips.append(SourceClip(u.id, str(u.path), split, source_split, transcript, u.speaker,
                                        round(float(u.seconds or 0.0) * 16000)))
    return clips
