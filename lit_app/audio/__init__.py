"""Audio core: file I/O with validation, and differentiable feature front-ends."""

from lit_app.audio.features import MFCC, LogMelSpectrogram
from lit_app.audio.io import (
    SAMPLE_RATE,
    STRICT,
    AudioError,
    AudioPolicy,
    check_audio,
    read_audio,
    write_wav,
)
from lit_app.audio.pcm import to_pcm16

__all__ = [
    "MFCC",
    "SAMPLE_RATE",
    "STRICT",
    "AudioError",
    "AudioPolicy",
    "LogMelSpectrogram",
    "check_audio",
    "read_audio",
    "to_pcm16",
    "write_wav",
]
