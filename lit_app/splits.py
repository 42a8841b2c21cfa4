"""The app's split names, and how each stage of a run and each corpus layout maps onto them.

Detection data, adversarial corpora and the speech-recognition sets use ``train``/``val``/``test``. The
Speech Commands layout (real or synthetic) names the same splits ``train``/``validation``/``testing``.
"""

from __future__ import annotations

SPLITS = ("train", "val", "test")
#: the splits each Lightning stage reads
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}

SPEECH_COMMANDS_SPLITS = ("train", "validation", "testing")
#: Speech Commands split name -> the app's split name
FROM_SPEECH_COMMANDS = dict(zip(SPEECH_COMMANDS_SPLITS, SPLITS))
#: the Speech Commands splits each Lightning stage reads
SPEECH_COMMANDS_STAGE_SPLITS = {stage: tuple(SPEECH_COMMANDS_SPLITS[SPLITS.index(s)] for s in splits)
                                for stage, splits in STAGE_SPLITS.items()}
