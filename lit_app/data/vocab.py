"""Word lists and label sets of the Google Speech Commands tasks."""

from __future__ import annotations

from typing import Literal

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE_FOLDER = "_background_noise_"

KEYWORDS_10 = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
WORDS_V1 = KEYWORDS_10 + (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
)
WORDS_V2 = WORDS_V1 + ("backward", "forward", "follow", "learn", "visual")
OTHER_WORDS = tuple(w for w in WORDS_V2 if w not in KEYWORDS_10)

Task = Literal["keywords12", "words35"]


def task_labels(task: Task) -> list[str]:
    """Class names in index order: ``keywords12`` is silence, unknown and the ten keywords (the order of
    TensorFlow's speech-commands example); ``words35`` is every word of v0.02."""
    if task == "keywords12":
        return [SILENCE, UNKNOWN, *KEYWORDS_10]
    if task == "words35":
        return list(WORDS_V2)
    raise ValueError(f"unknown Speech Commands task {task!r}; choose 'keywords12' or 'words35'")
