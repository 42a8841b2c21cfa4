"""Transcribed utterances: the unit every speech-recognition corpus reader returns."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from lit_app.audio.io import AudioError, check_complete, require_regular_file


@dataclass(frozen=True)
class Utterance:
    """One transcribed clip.

    Args:
        id: unique name within the corpus (shown in error messages and decoded examples).
        path: the audio file.
        transcript: the text as the corpus gives it (normalised later, against the model's alphabet).
        speaker: speaker or voice identity (corpora are split by it).
        seconds: duration, when the corpus records it; :func:`with_durations` reads it from the file header.
    """

    id: str
    path: Path
    transcript: str
    speaker: str = ""
    seconds: float | None = None


def audio_seconds(path: Path) -> float:
    """Duration from the file header, without decoding the audio.

    Raises:
        AudioError: missing, not a regular file, unreadable or cut short; the message names it.
    """
    import soundfile as sf

    require_regular_file(path)
    check_complete(path)
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types
        raise AudioError(
            f"{path}: unreadable audio ({err}). The file is corrupt or not a format libsndfile reads; delete or "
            "replace it."
        ) from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: empty audio (no samples). Delete the file or remove it from the corpus listing.")
    return info.frames / info.samplerate


def with_durations(
    utterances: Iterable[Utterance], skip_bad: bool, num_threads: int = 8
) -> tuple[list[Utterance], list[str]]:
    """Fill in missing durations from file headers; returns the usable utterances and messages for skipped ones.

    Raises:
        AudioError: a file is missing or unreadable and ``skip_bad`` is false.
    """
    utterances = list(utterances)

    def measure(utterance: Utterance) -> Utterance | AudioError:
        if utterance.seconds is not None:
            return utterance
        try:
            return replace(utterance, seconds=audio_seconds(utterance.path))
        except AudioError as err:
            if not skip_bad:
                raise
            return err

    with ThreadPoolExecutor(num_threads) as pool:
        results = list(pool.map(measure, utterances))
    return [r for r in results if isinstance(r, Utterance)], [str(r) for r in results if isinstance(r, AudioError)]


def partition(items: Iterable[Utterance], check: Callable[[Utterance], None]) -> tuple[list[Utterance], list[str]]:
    """Split ``items`` into those ``check`` accepts and the messages of the errors it raised (ValueError)."""
    kept, errors = [], []
    for item in items:
        try:
            check(item)
        except ValueError as err:
            errors.append(str(err))
        else:
            kept.append(item)
    return kept, errors
