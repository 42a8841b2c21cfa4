"""``DGCStrategy``: Lightning's DDP with Deep Gradient Compression in its communication hook."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import CheckpointIO, ClusterEnvironment
from lightning_fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning_fabric.utilities.cloud_io import get_filesystem
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.rank_zero import rank_zero_info
from torch.nn.parallel import DistributedDataParallel

from strategies.dgc import wire
from strategies.dgc.compressor import CompressorSettings, DGCCompressor
from strategies.dgc.hook import DGCHookState, dgc_hook
from strategies.dgc.schedule import PAPER_WARMUP, DensitySchedule
from strategies.dgc.selection import Selection
from strategies.dgc.shutdown import destroy_process_group_at_exit

SUPPORTED_PRECISION = ("32-true", "bf16-mixed", "bf16-true", "64-true")
CHECKPOINT_KEY = "dgc"
CYCLING_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)
# A callback-state key no callback owns: a run resumed without DGCStrategy makes Lightning warn with this text
# ("callbacks used to create the checkpoint need to be provided ... Please add the following callbacks: [...]").
RESUME_MARKER = (
    "DGCStrategy (this checkpoint was trained with Deep Gradient Compression: resume it with DGCStrategy, "
    "e.g. -c configs/trainer/dgc_cpu.yaml, or training continues as plain momentum SGD without DGC's per-rank "
    "momenta and residuals)"
)


class DGCStrategy(DDPStrategy):
    """Distributed data parallel training with Deep Gradient Compression (Lin et al., ICLR 2018).

    Each rank sends only the largest entries of its accumulated gradient (0.1% by default) and keeps the
    rest as a residual for later steps, with momentum correction, momentum factor masking, local gradient
    clipping and an exponential warm-up of the density. Works wherever DDP works: CPU (gloo) and GPU (NCCL),
    one node or many (torchrun, SLURM and the other cluster environments of Lightning). Beyond the paper:
    ``aggregation="reduce_scatter"`` (traffic per rank independent of the number of ranks) and compact codes
    (``index_coding="block16"``, ``value_dtype="fp8"``); docs/dgc.md says which to pick for which cluster.

    The module must use ``torch.optim.SGD``: the strategy takes over its momentum, Nesterov flag and weight
    decay (they must act before compression) and sets them to zero in the optimizer, which keeps its
    learning rate and schedulers. Momenta and residuals are saved per rank next to each checkpoint
    (``<checkpoint>.dgc-rank<R>.pt``) and restored on resume.

    Args:
        density: final fraction of each weight tensor's entries sent per step (0.001 = 99.9% sparsity).
        warmup_densities: densities of the warm-up stages (the paper's 25%, 6.25%, 1.5625%, 0.4%).
        warmup_interval: a warm-up stage lasts ``warmup_every`` epochs (the paper) or optimizer steps.
        warmup_every: length of each warm-up stage.
        dense_steps: the first steps exchange dense gradients (exact momentum SGD) while DDP settles its buckets.
        momentum_masking: clear the momentum of entries that were sent (momentum factor masking).
        clip_norm: local clipping of each tensor's gradient at ``clip_norm / sqrt(world_size)``, before it
            enters the residual; a per-tensor bound, so not interchangeable with the Trainer's global-norm
            ``gradient_clip_val`` (which would clip after aggregation and is refused).
        value_dtype: dtype of the sent values: ``fp32``, ``fp16``, ``bf16`` or ``fp8`` (e4m3 with a per-message
            scale); the rounding error stays in the residual.
        index_coding: ``int32`` (4 bytes per index) or ``block16`` (16-bit offsets within 64 Ki blocks plus a
            count per block: about 2 bytes per index).
        aggregation: ``allgather`` (the paper: every rank receives every rank's entries, traffic per rank grows
            with the number of ranks) or ``reduce_scatter`` (a global top-k over N index ranges: a sparse
            reduce-scatter then an all-gather of the selection, traffic per rank independent of N).
        selection: ``tensor``: exact top-k of each tensor (the paper); ``bucket``: exact top-k over each DDP
            bucket with the same total (fewer kernels, a layer may take more than its share).
        min_compress_numel: tensors smaller than this (and every tensor with ``dim <= 1``) are sent dense.
        dense_fallback: all-reduce a bucket densely whenever that moves no more bytes than the sparse all-gather
            (early warm-up stages, many ranks).
        accelerator: see :class:`~pytorch_lightning.strategies.DDPStrategy`.
        parallel_devices: see :class:`~pytorch_lightning.strategies.DDPStrategy`.
        cluster_environment: see :class:`~pytorch_lightning.strategies.DDPStrategy`.
        checkpoint_io: see :class:`~pytorch_lightning.strategies.DDPStrategy`.
        precision_plugin: see :class:`~pytorch_lightning.strategies.DDPStrategy`.
        process_group_backend: ``nccl`` or ``gloo``; by default NCCL on GPUs and gloo on CPUs.
        timeout: timeout of collective operations.
        start_method: ``popen`` (scripts, torchrun, SLURM), ``spawn`` or ``fork`` (notebooks, tests).
        bucket_cap_mb: DDP bucket size in MiB (one DGC message per bucket).
        find_unused_parameters: must stay ``False`` (refused: DDP would drop DGC's updates of unused parameters).
        **kwargs: further arguments of :class:`torch.nn.parallel.DistributedDataParallel`.
    """

    def __init__(
        self,
        density: float = 0.001,
        warmup_densities: tuple[float, ...] = PAPER_WARMUP,
        warmup_interval: Literal["epoch", "step"] = "epoch",
        warmup_every: int = 1,
        dense_steps: int = 2,
        momentum_masking: bool = True,
        clip_norm: float | None = None,
        value_dtype: Literal["fp32", "fp16", "bf16", "fp8"] = "fp32",
        index_coding: Literal["int32", "block16"] = "int32",
        aggregation: Literal["allgather", "reduce_scatter"] = "allgather",
        selection: Selection = "tensor",
        min_compress_numel: int = 1024,
        dense_fallback: bool = True,
        accelerator: pl.accelerators.Accelerator | None = None,
        parallel_devices: list[torch.device] | None = None,
        cluster_environment: ClusterEnvironment | None = None,
        checkpoint_io: CheckpointIO | None = None,
        precision_plugin: Precision | None = None,
        process_group_backend: str | None = None,
        timeout: timedelta | None = default_pg_timeout,
        start_method: Literal["popen", "spawn", "fork", "forkserver"] = "popen",
        bucket_cap_mb: float | None = None,
        find_unused_parameters: bool = False,
        **kwargs: Any,
    ) -> None:
        if bucket_cap_mb is not None:
            kwargs["bucket_cap_mb"] = bucket_cap_mb
        if find_unused_parameters:
            raise ValueError(
                "DGCStrategy does not support find_unused_parameters=True: DDP discards the communication hook's "
                "result for a parameter that got no gradient in a step, after DGC has already advanced that "
                "parameter's momentum and residual and cleared the entries it sent, so its updates would be lost "
                "without a word. Make every trainable parameter take part in each step's loss (freeze the unused "
                "ones with requires_grad=False, or remove them), or train with the plain DDPStrategy."
            )
        for name in ("ddp_comm_hook", "ddp_comm_state", "ddp_comm_wrapper", "model_averaging_period"):
            if kwargs.get(name) is not None:
                raise ValueError(f"DGCStrategy installs its own communication hook; remove {name}={kwargs[name]!r}")
            kwargs.pop(name, None)
        if value_dtype not in wire.VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {sorted(wire.VALUE_DTYPES)}, got {value_dtype!r}")
        if selection not in ("tensor", "bucket"):
            raise ValueError(f"selection must be 'tensor' or 'bucket', got {selection!r}")
        if dense_steps < 0:
            raise ValueError(f"dense_steps must be >= 0, got {dense_steps}")
        self.schedule = DensitySchedule(density, warmup_densities, warmup_interval, warmup_every)
        self.settings = CompressorSettings(
            momentum_masking=momentum_masking,
            clip_norm=clip_norm,
            value_dtype=wire.VALUE_DTYPES[value_dtype],
            selection=selection,
            min_compress_numel=min_compress_numel,
            dense_fallback=dense_fallback,
            aggregation=aggregation,
            index_coding=index_coding,
        )
        self.dense_steps = dense_steps
        self._dgc_state: DGCHookState | None = None
        self._restored: dict[str, Any] | None = None
        self._sgd: tuple[float, bool, dict[torch.Tensor, float]] | None = None
        self._sgd_groups: list[list[dict[str, Any]]] = []
        super().__init__(
            accelerator=accelerator,
            parallel_devices=parallel_devices,
            cluster_environment=cluster_environment,
            checkpoint_io=checkpoint_io,
            precision_plugin=precision_plugin,
            process_group_backend=process_group_backend,
            timeout=timeout,
            start_method=start_method,
            **kwargs,
        )

    @classmethod
    def register_strategies(cls, strategy_registry: Any) -> None:
        # Overridden so the inherited method never re-registers the "ddp" names with this class.
        for name, start_method in (("dgc", "popen"), ("dgc_spawn", "spawn")):
            if name not in strategy_registry:
                strategy_registry.register(
                    name,
                    cls,
                    description=f"Deep Gradient Compression on DDP, start_method={start_method!r}",
                    start_method=start_method,
                )

    @property
    def dgc_state(self) -> DGCHookState | None:
        """The hook's state on this rank (``None`` until the model is wrapped); its ``last_step`` has the statistics."""
        return self._dgc_state

    # --- contract checks ---------------------------------------------------------------------------------------

    @property
    def precision_plugin(self) -> Precision:
        return DDPStrategy.precision_plugin.fget(self)

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        # Checked here because the Trainer sets the plugin while it is constructed, before any process starts.
        _check_precision(plugin)
        DDPStrategy.precision_plugin.fset(self, plugin)

    def _check_trainer(self, trainer: pl.Trainer) -> None:
        if trainer.gradient_clip_val:
            raise ValueError(
                f"DGCStrategy does not support Trainer(gradient_clip_val={trainer.gradient_clip_val}): Lightning clips "
                "the aggregated update after the exchange, but DGC must clip each rank's gradient before it enters "
                "the residual. Remove gradient_clip_val and set DGCStrategy(clip_norm=...): it bounds each tensor's "
                "norm at clip_norm / sqrt(world_size), not the global norm, so the same number clips differently "
                "(docs/dgc.md: 5 for the keyword spotter, 1 for DeepSpeech)."
            )
        _check_precision(self.precision_plugin)

    def _check_schedulers(self) -> None:
        for config in self.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, CYCLING_SCHEDULERS) and getattr(scheduler, "cycle_momentum", False):
                raise ValueError(
                    f"DGCStrategy does not support {type(scheduler).__name__}(cycle_momentum=True): the scheduler "
                    "writes momentum back into SGD's parameter groups after DGC moved it into the exchange, so SGD "
                    "would apply its own momentum on top of DGC's. Pass cycle_momentum=False (the learning rate "
                    "still cycles; DGC keeps SGD's momentum fixed)."
                )

    def _check_sgd_extras_zero(self) -> None:
        """Refuse to step when something wrote momentum or weight decay back into SGD since the strategy took them."""
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                written = {k: group[k] for k in ("momentum", "weight_decay") if group.get(k)}
                if written or group.get("nesterov"):
                    raise RuntimeError(
                        f"SGD's parameter group has {written or {'nesterov': True}} again after DGCStrategy moved "
                        "momentum, Nesterov and weight decay into the exchange: SGD would apply them a second time. "
                        "Something (a momentum-cycling scheduler, a callback) writes them each step; stop it from "
                        "doing so (schedulers: cycle_momentum=False)."
                    )

    def _adopt_sgd(self, optimizers: list[torch.optim.Optimizer]) -> tuple[float, bool, dict[torch.Tensor, float]]:
        """Read momentum, Nesterov and weight decay from the SGD optimizers and zero them there."""
        if not optimizers:
            raise ValueError("DGCStrategy needs an optimizer: return torch.optim.SGD from configure_optimizers")
        settings: set[tuple[float, bool]] = set()
        weight_decay: dict[torch.Tensor, float] = {}
        for optimizer in optimizers:
            if type(optimizer) is not torch.optim.SGD:
                raise ValueError(
                    f"DGCStrategy needs torch.optim.SGD, got {type(optimizer).__name__}: DGC moves SGD's momentum "
                    "into the gradient exchange (momentum correction), which has no equivalent for adaptive "
                    "optimizers. Set model.init_args.optimizer: sgd (with a learning rate suited to SGD), or train "
                    "with the plain DDPStrategy (dense all-reduce) for Adam-like optimizers."
                )
            for group in optimizer.param_groups:
                if group.get("dampening", 0) or group.get("maximize", False):
                    raise ValueError("DGCStrategy supports SGD without dampening and without maximize=True")
                settings.add((float(group["momentum"]), bool(group["nesterov"])))
                for p in group["params"]:
                    weight_decay[p] = float(group["weight_decay"])
        if len(settings) > 1:
            raise ValueError(
                f"DGCStrategy needs one momentum and Nesterov setting for all parameter groups, got {sorted(settings)}"
            )
        momentum, nesterov = settings.pop()
        self._sgd_groups = [
            [{k: group[k] for k in ("momentum", "nesterov", "weight_decay")} for group in optimizer.param_groups]
            for optimizer in optimizers
        ]
        for optimizer in optimizers:
            _zero_sgd_extras(optimizer)
        return momentum, nesterov, weight_decay

    # --- Lightning hooks -------------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer) -> None:
        self._check_trainer(trainer)
        super().setup(trainer)
        if trainer.state.fn == TrainerFn.FITTING:
            self._check_schedulers()
            self._sgd = self._adopt_sgd(self.optimizers)
            assert self._dgc_state is not None
            self._dgc_state.compressor.configure_optimizer(*self._sgd)
            momentum, nesterov, _ = self._sgd
            rank_zero_info(
                f"DGC: {self.schedule}, momentum {momentum}{' (Nesterov)' if nesterov else ''} moved from SGD into "
                f"the exchange, {self.settings}"
            )

    def _register_ddp_hooks(self) -> None:
        # Lightning registers communication hooks only on CUDA; DGC must run on CPU (gloo) ranks as well,
        # otherwise DDP silently falls back to a dense all-reduce.
        assert isinstance(self.model, DistributedDataParallel)
        names = {p: name for name, p in self.model.module.named_parameters()}
        compressor = DGCCompressor(self.settings, names)
        self._dgc_state = DGCHookState(compressor, None, self.schedule.density, self.dense_steps)
        if self._restored is not None:
            self._dgc_state.load_state_dict(self._restored)
            self._restored = None
        self.model.register_comm_hook(self._dgc_state, dgc_hook)
        destroy_process_group_at_exit()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self._dgc_state is not None:
            self._check_sgd_extras_zero()
            trainer = self.lightning_module.trainer
            self._dgc_state.density = self.schedule.at(trainer.current_epoch, trainer.global_step)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        super().load_optimizer_state_dict(checkpoint)
        # A checkpoint of a run without DGC brings SGD's momentum back; it belongs to the strategy here.
        for optimizer in self.optimizers:
            _zero_sgd_extras(optimizer)

    # --- per-rank state next to each checkpoint --------------------------------------------------------------

    @staticmethod
    def state_path(checkpoint_path: _PATH, rank: int) -> str:
        """Where rank ``rank`` keeps its momenta and residuals for the checkpoint at ``checkpoint_path``."""
        path = str(checkpoint_path)
        if "://" not in path:
            path = os.path.realpath(path)  # ModelCheckpoint's save_last="link" makes last.ckpt a symlink
        return f"{path}.dgc-rank{rank}.pt"

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: _PATH, storage_options: Any | None = None) -> None:
        if self._dgc_state is not None and "optimizer_states" in checkpoint:
            checkpoint[CHECKPOINT_KEY] = {"world_size": self.world_size, "iteration": self._dgc_state.iteration}
            # SGD's own settings go back into the saved groups (copies), so that resuming without DGC trains
            # with momentum and weight decay; the marker makes Lightning warn in such a run (see load_checkpoint).
            for state, groups in zip(checkpoint["optimizer_states"], self._sgd_groups):
                for saved, own in zip(state["param_groups"], groups):
                    saved.update(own)
            checkpoint.setdefault("callbacks", {})[RESUME_MARKER] = {"world_size": self.world_size}
            own = {"rank": self.global_rank, "world_size": self.world_size, "state": self._dgc_state.state_dict()}
            self.checkpoint_io.save_checkpoint(own, f"{filepath}.dgc-rank{self.global_rank}.pt")
        super().save_checkpoint(checkpoint, filepath, storage_options)

    def load_checkpoint(self, checkpoint_path: _PATH, weights_only: bool | None = None) -> dict[str, Any]:
        checkpoint = super().load_checkpoint(checkpoint_path, weights_only=weights_only)
        checkpoint.get("callbacks", {}).pop(RESUME_MARKER, None)  # the warning is for runs without DGC
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            return checkpoint
        path = self.state_path(checkpoint_path, self.global_rank)
        problem = None
        if saved["world_size"] != self.world_size:
            problem = f"it was saved by {saved['world_size']} ranks and this run has {self.world_size}"
        elif not get_filesystem(path).exists(path):
            problem = f"{path} is missing"
        if problem is not None:
            # Every rank warns: each one may miss its own file.
            warnings.warn(
                f"[rank {self.global_rank}] DGC momenta and residuals of {checkpoint_path} cannot be restored "
                f"({problem}); training continues from empty DGC state, so it will not reproduce the uninterrupted run.",
                stacklevel=2,
            )
            return checkpoint
        own = self.checkpoint_io.load_checkpoint(path, weights_only=True)
        if self._dgc_state is not None:
            self._dgc_state.load_state_dict(own["state"])
        else:
            self._restored = own["state"]
        return checkpoint

    def remove_checkpoint(self, filepath: _PATH) -> None:
        super().remove_checkpoint(filepath)
        self.checkpoint_io.remove_checkpoint(f"{filepath}.dgc-rank{self.global_rank}.pt")


def _check_precision(plugin: Precision | None) -> None:
    precision = str(getattr(plugin, "precision", "32-true"))
    if precision not in SUPPORTED_PRECISION:
        raise ValueError(
            f"DGCStrategy does not support precision={precision!r}: a gradient scaler's scaled and skipped steps "
            "(and fp16's narrow range) corrupt the residuals DGC carries from step to step. Use "
            "precision='bf16-mixed' (no scaler) or '32-true'; to halve the bytes on the wire set "
            "DGCStrategy(value_dtype='bf16')."
        )


def _zero_sgd_extras(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        group["momentum"] = 0.0
        group["nesterov"] = False
        group["weight_decay"] = 0.0
