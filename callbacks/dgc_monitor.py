"""Logs what Deep Gradient Compression sent at each step, to W&B or any other Lightning logger."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_warn


class DGCMonitor(Callback):
    """Log density, bytes sent, dense bytes, compression ratio, wire bytes and DGC's time of every step.

    ``compression_ratio`` compares this rank's message with the dense fp32 gradient; ``wire_ratio`` compares
    what this rank sent to the others in the whole exchange with what a dense fp32 ring all-reduce would send
    at this number of ranks (the saving that matters for the paper's all-gather, whose traffic grows with N).

    ``selection_ms`` is the top-k selection, ``compression_ms`` all local DGC work (selection included).

    The DGC communication hook only records these (logging from inside a hook would run in the middle of
    the backward pass); this callback reads them after the optimizer step. Values are this rank's; every
    rank sends the same number of bytes. With gradient accumulation one step covers several batches.

    Args:
        prefix: prefix of the metric names.
    """

    def __init__(self, prefix: str = "dgc/") -> None:
        self.prefix = prefix
        self._logged_iteration = -1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not hasattr(trainer.strategy, "dgc_state"):
            rank_zero_warn(f"DGCMonitor has nothing to log: the strategy is {type(trainer.strategy).__name__}, not DGCStrategy")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        state = getattr(trainer.strategy, "dgc_state", None)
        stats = state.last_step if state is not None else None
        if stats is None or stats.iteration == self._logged_iteration:
            return  # no synchronised step since the last call (gradient accumulation)
        self._logged_iteration = stats.iteration
        p = self.prefix
        pl_module.log_dict(
            {
                f"{p}density": stats.density,
                f"{p}bytes_sent": float(stats.bytes_sent),
                f"{p}dense_bytes": float(stats.dense_bytes),
                f"{p}compression_ratio": stats.compression_ratio,
                f"{p}wire_bytes": float(stats.wire_bytes),
                f"{p}wire_ratio": stats.wire_ratio,
                f"{p}selection_ms": stats.selection_ms,
                f"{p}compression_ms": stats.compression_ms,
                f"{p}dense_buckets": float(stats.dense_buckets),
            },
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
