"""One W&B run per job stage (attack sets, grid, noise flooding, adaptive attacker), offline by default.

Every method does nothing when W&B is off (``enabled=False``, ``WANDB_MODE=disabled``) or not installed, so a
stage calls them unconditionally; its PNGs are written into its run folder either way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class StageLog:
    """An offline W&B run of one stage, saved under ``folder/wandb``.

    Args:
        name: run name (e.g. ``detector-grid-demo``).
        job_type: the stage (``grid``, ``noise-flooding``, ``attack-set``, ``adaptive``).
        folder: the stage's output folder; the W&B run goes into its ``wandb/`` folder.
        enabled: ``False`` skips W&B entirely.
        config: settings recorded with the run.
    """

    def __init__(self, name: str, job_type: str, folder: str | Path, enabled: bool = True,
                 config: dict[str, Any] | None = None) -> None:
        self.run: Any = None
        os.environ.setdefault("WANDB_MODE", "offline")
        if not enabled or os.environ["WANDB_MODE"] == "disabled":
            return
        try:
            import wandb
        except ImportError:
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._wandb = wandb
        self.run = wandb.init(project="lit-app", name=name, job_type=job_type, dir=str(Path(folder).resolve()),
                              config=config or {}, reinit="finish_previous")

    def images(self, images: dict[str, str | Path]) -> None:
        """PNG files by key."""
        if self.run is not None and images:
            self.run.log({key: self._wandb.Image(str(path)) for key, path in images.items()})

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if self.run is not None:
            self.run.log({key: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def audio(self, key: str, clips: Sequence[Any], captions: Sequence[str], sample_rate: int = 16000) -> None:
        """Clips (1-D arrays) as W&B audio, captioned; written as media files even offline."""
        if self.run is not None and clips:
            self.run.log({key: [self._wandb.Audio(clip, sample_rate=sample_rate, caption=caption)
                                for clip, caption in zip(clips, captions)]})

    # The two calls of pytorch_lightning's WandbLogger that lit_app.advsets.wandb_log.log_corpora makes.
    def log_table(self, key: str, columns: Sequence[str], data: Sequence[Sequence[Any]]) -> None:
        self.table(key, columns, data)

    def log_audio(self, key: str, audios: Sequence[Any], sample_rate: Sequence[int], caption: Sequence[str]) -> None:
        self.audio(key, audios, caption, sample_rate[0] if sample_rate else 16000)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
