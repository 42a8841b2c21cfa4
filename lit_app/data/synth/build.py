"""Resumable, parallel, deterministic building of a synthetic corpus.

A corpus is first *planned*: every clip's settings are drawn from one seeded generator in the main
process, so a clip is a pure function of the seed and its place in the plan. Workers then *render* the
clips that are not yet on disk; each file is written atomically (temporary name, then rename), so an
interrupted build leaves only whole clips, and a rerun renders exactly the missing ones. ``corpus.json``
records the settings: a rerun with other settings is refused instead of mixing two corpora.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def exit_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when the build process dies (killed, not shut down), not linger."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


_speaker: Any = None  # one text-to-speech front end per (worker) process


def render_clips(render_clip: Callable[[Any, dict[str, Any], str], Any], specs: list[dict[str, Any]], root: str) -> int:
    """Render the clips of ``specs`` with ``render_clip(speaker, spec, root)`` and write them under ``root`` (runs
    in worker processes); returns how many."""
    import torch

    from lit_app.audio.io import SAMPLE_RATE, write_wav
    from lit_app.data.synth.tts import Speaker

    global _speaker
    torch.set_num_threads(1)
    _speaker = _speaker or Speaker(SAMPLE_RATE)
    for spec in specs:
        write_wav(Path(root) / spec["path"], render_clip(_speaker, spec, root))
    return len(specs)


def render_missing(
    root: Path,
    specs: Sequence[dict[str, Any]],
    render: Callable[[list[dict[str, Any]]], int],
    num_workers: int,
    description: str,
    show_progress: bool = True,
    chunk_size: int = 32,
) -> int:
    """Render every spec whose ``path`` (relative to ``root``) does not exist yet; returns how many.

    ``render`` receives a list of specs and writes their files; with ``num_workers > 0`` it runs in
    separate processes (spawned, so each builds its own TTS engines).
    """
    todo = [spec for spec in specs if not (root / spec["path"]).exists()]
    if not todo:
        return 0
    chunks = [todo[i : i + chunk_size] for i in range(0, len(todo), chunk_size)]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress or bool(os.environ.get("CI"))) as progress:
        task = progress.add_task(description, total=len(specs), completed=len(specs) - len(todo))
        if num_workers <= 0:
            for chunk in chunks:
                progress.advance(task, render(chunk))
            return len(todo)
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=get_context("spawn"),
                                 initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
            pending = {pool.submit(render, chunk) for chunk in chunks[: 2 * num_workers]}
            queued = iter(chunks[2 * num_workers :])
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    progress.advance(task, future.result())
                    next_chunk = next(queued, None)
                    if next_chunk is not None:
                        pending.add(pool.submit(render, next_chunk))
    return len(todo)
