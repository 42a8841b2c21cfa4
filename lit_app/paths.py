"""Paths read from a list file (a CSV or TSV of clips): kept inside the dataset's folder.

A list names files relative to a base folder (the list's own folder unless the user names another). A path
that leads outside it, by ``..``, an absolute path or a symbolic link, is an error naming the row, raised
before the file is looked at: the message is the same whether the outside file exists or not, so a list
cannot be used to probe the file system or to feed an unrelated file into training.
"""

from __future__ import annotations

import os
from pathlib import Path


class ListedPathError(ValueError):
    """A list file names a path outside its base folder, or names one file twice; the message names the rows."""


def inside_base(base: str | os.PathLike, entry: str | os.PathLike, where: str,
                relative_to: str | os.PathLike | None = None) -> Path:
    """The file ``entry`` resolved (links followed), if it lies inside ``base``.

    Args:
        base: the folder every listed file must lie in.
        entry: the path as the list gives it: absolute, or relative to ``relative_to``.
        where: the row, for the message (e.g. ``list.csv:12``).
        relative_to: the folder relative entries start from; ``base`` when omitted.

    Raises:
        ListedPathError: ``entry`` is empty or resolves outside ``base``.
    """
    if not str(entry).strip():
        raise ListedPathError(f"{where}: empty path. Give the clip's path relative to {relative_to or base}.")
    root = Path(base).resolve()
    start = Path(relative_to).resolve() if relative_to is not None else root
    try:
        path = (start / entry).resolve()  # an absolute entry replaces start here
    except (OSError, RuntimeError):  # a symbolic-link loop; reading the file reports it
        path = Path(os.path.normpath(start / entry))
    if not path.is_relative_to(root):
        raise ListedPathError(
            f"{where}: {str(entry)!r} lies outside {root}; refused. Lists may only name files inside the dataset's "
            "folder: move the file there, or name a base folder that holds every listed file."
        )
    return path
