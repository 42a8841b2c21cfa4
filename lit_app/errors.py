"""How the app's commands report errors the user can fix: one line, no traceback.

Every error below carries a message that names the file and the fix, so a traceback adds nothing but noise;
``LIT_APP_DEBUG=1`` shows it anyway. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

DEBUG_VARIABLE = "LIT_APP_DEBUG"


def user_errors() -> tuple[type[BaseException], ...]:
    """The app's exception types whose message tells the user what to fix."""
    # Imported here: the command modules import this one before the (heavier) modules that define the errors.
    from lit_app.advsets.datamodule import LeakageError
    from lit_app.advsets.external import DatasetLayoutError
    from lit_app.advsets.manifest import ManifestError
    from lit_app.audio.io import AudioError
    from lit_app.checkpoints import CheckpointError
    from lit_app.folders import CorpusError, FolderBusyError
    from lit_app.paths import ListedPathError
    from lit_app.text import TranscriptError

    return (AudioError, CheckpointError, CorpusError, FolderBusyError, DatasetLayoutError, LeakageError,
            ListedPathError, ManifestError, TranscriptError)


@contextmanager
def one_line_errors(program: str) -> Iterator[None]:
    """Turn a user error raised inside the block into ``<program>: error: <message>`` on stderr and exit status 1."""
    try:
        yield
    except user_errors() as err:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        message = " ".join(str(err).split("\n"))
        print(f"{program}: error: {message} (set {DEBUG_VARIABLE}=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
