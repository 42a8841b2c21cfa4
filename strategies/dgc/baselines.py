"""DDP with PyTorch's stock communication hooks on every device, for side-by-side comparisons with DGC.

Lightning's ``DDPStrategy(ddp_comm_hook=...)`` attaches the hook only on CUDA, so on CPU (gloo) ranks a
"bf16 compressed" or "PowerSGD" run silently does a dense fp32 all-reduce. This strategy attaches it always.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from strategies.dgc.shutdown import destroy_process_group_at_exit

Hook = Literal["allreduce", "fp16", "bf16", "powersgd"]


class CommHookDDPStrategy(DDPStrategy):
    """DDP whose buckets go through one of PyTorch's built-in communication hooks, on CPU and GPU.

    Args:
        hook: ``allreduce`` (DDP's default, fp32), ``fp16`` / ``bf16`` (compress to 16 bits, 2x) or ``powersgd``.
        powersgd_rank: matrix approximation rank of PowerSGD.
        powersgd_start_iter: PowerSGD exchanges dense gradients before this step (must be > 1 for DDP's bucket rebuild).
        **kwargs: arguments of :class:`~pytorch_lightning.strategies.DDPStrategy`.
    """

    def __init__(
        self, hook: Hook = "allreduce", powersgd_rank: int = 1, powersgd_start_iter: int = 2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.hook = hook
        self.powersgd_rank = powersgd_rank
        self.powersgd_start_iter = powersgd_start_iter

    def _register_ddp_hooks(self) -> None:
        assert isinstance(self.model, DistributedDataParallel)
        destroy_process_group_at_exit()
        if self.hook == "allreduce":
            return
        if self.hook == "powersgd":
            state = powerSGD_hook.PowerSGDState(
                process_group=None,
                matrix_approximation_rank=self.powersgd_rank,
                start_powerSGD_iter=self.powersgd_start_iter,
            )
            hook = powerSGD_hook.powerSGD_hook
            if dist.get_backend() == "gloo":
                hook = one_bucket_at_a_time(hook)
            self.model.register_comm_hook(state, hook)
            return
        hook = {"fp16": default_hooks.fp16_compress_hook, "bf16": default_hooks.bf16_compress_hook}[self.hook]
        self.model.register_comm_hook(dist.group.WORLD, hook)


def one_bucket_at_a_time(hook: Callable[[Any, dist.GradBucket], torch.futures.Future]) -> Callable:
    """Run a chained-collective hook to completion before DDP hands it the next bucket.

    PowerSGD issues its second and third all-reduce from ``.then()`` callbacks of the first. Gloo completes work
    on its own threads, so with two or more buckets those callbacks race the next bucket's first all-reduce, and
    ranks can issue the collectives in different orders: gloo aborts with "Received data size doesn't match".
    Only gloo runs get this wrapper; NCCL runs use the stock hook, PyTorch's tested path. Waiting costs the overlap
    of communication with the rest of the backward pass, which CPU runs barely have.
    """

    @functools.wraps(hook)  # keeps the name DDP logs, and the signature DDP checks
    def serialised(state: Any, bucket: dist.GradBucket) -> torch.futures.Future:
        done: torch.futures.Future = torch.futures.Future()
        done.set_result(hook(state, bucket).wait())
        return done

    return serialised
