"""DDP communication hook running DGC: one collective per bucket, statistics for a callback to log.

Register with ``ddp_model.register_comm_hook(DGCHookState(...), dgc_hook)``. DDP calls the hook once per
bucket per synchronised backward (gradient accumulation with ``no_sync`` calls it once, on the sum), in
bucket order; the returned future's value replaces the bucket's gradients.
"""

# No ``from __future__ import annotations`` here: DDP checks the hook's annotations as real objects
# (``bucket: dist.GradBucket``, returning ``torch.futures.Future[torch.Tensor]``).

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from strategies.dgc import wire
from strategies.dgc.compressor import DGCCompressor, Packet
from strategies.dgc.timing import Stopwatch


@dataclass
class StepStats:
    """What one synchronised step sent, summed over buckets (this rank's view; every rank sends as much).

    ``bytes_sent`` is this rank's payload: what it hands to the (first) collective. ``dense_bytes`` is the
    same gradient as dense fp32, the reference of the compression ratio. ``wire_bytes`` is what this rank
    sends to the others in the whole exchange (ring and pairwise algorithms), ``dense_wire_bytes`` what a
    dense fp32 ring all-reduce would send: their ratio is the saving at this number of ranks.
    """

    iteration: int
    density: float
    elements: int = 0
    elements_sent: int = 0
    bytes_sent: int = 0
    dense_bytes: int = 0
    wire_bytes: float = 0.0
    dense_wire_bytes: float = 0.0
    buckets: int = 0
    dense_buckets: int = 0
    timers: list[Stopwatch] = field(default_factory=list)
    work: list[Stopwatch] = field(default_factory=list)

    @property
    def compression_ratio(self) -> float:
        return self.dense_bytes / max(self.bytes_sent, 1)

    @property
    def wire_ratio(self) -> float:
        """Bytes a dense fp32 ring all-reduce would send per rank over the bytes this exchange sent (0: one rank)."""
        return self.dense_wire_bytes / self.wire_bytes if self.wire_bytes else 0.0

    @property
    def selection_ms(self) -> float:
        """Top-k selection time over all buckets; synchronises CUDA events, so read it after the step."""
        return sum(t.ms() for t in self.timers)

    @property
    def compression_ms(self) -> float:
        """All local DGC work (compress and decompress, selection included) over all buckets."""
        return sum(t.ms() for t in self.work)

    def add(self, packet: Packet) -> None:
        layout = packet.layout
        self.buckets += 1
        self.elements += layout.numel
        self.dense_bytes += layout.numel * wire.DENSE_REFERENCE_BYTES
        self.bytes_sent += packet.payload_bytes
        self.wire_bytes += packet.wire_bytes
        self.dense_wire_bytes += wire.allreduce_wire_bytes(layout.numel * wire.DENSE_REFERENCE_BYTES, packet.world_size)
        if packet.dense:
            self.dense_buckets += 1
            self.elements_sent += layout.numel
        elif packet.kind == "scatter":  # k entries for each owner in the first phase
            self.elements_sent += packet.world_size * packet.k + layout.dense_numel
        else:
            self.elements_sent += packet.k + layout.dense_numel
        if packet.selection_time is not None:
            self.timers.append(packet.selection_time)


class DGCHookState:
    """State of :func:`dgc_hook`: the compressor, the density to use and the step counter.

    Args:
        compressor: this rank's compressor (holds momenta and residuals).
        process_group: group to communicate in; the default group when ``None``.
        density: density of the next steps; the strategy updates it from its warm-up schedule.
        dense_steps: the first steps are exchanged densely (exact momentum SGD), as PowerSGD does, so that
            compression starts once DDP has rebuilt its buckets.
    """

    def __init__(
        self,
        compressor: DGCCompressor,
        process_group: dist.ProcessGroup | None = None,
        density: float = 0.001,
        dense_steps: int = 2,
    ) -> None:
        self.compressor = compressor
        self.process_group = process_group
        self.density = density
        self.dense_steps = dense_steps
        self.iteration = 0
        self.last_step: StepStats | None = None
        self._current: StepStats | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "compressor": self.compressor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.iteration = int(state["iteration"])
        self.compressor.load_state_dict(state["compressor"])


def dgc_hook(state: DGCHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Compress the bucket, exchange it (one collective; two for ``reduce_scatter``) and return the averaged update."""
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world_size = group.size()
    buffer = bucket.buffer()
    dense_phase = state.iteration < state.dense_steps
    density = 1.0 if dense_phase else state.density
    if bucket.index() == 0 or state._current is None:
        state._current = StepStats(state.iteration, density)

    stats = state._current
    compress_time = Stopwatch(buffer.device)
    compress_time.start()
    packet = state.compressor.compress(
        bucket.parameters(), buffer, world_size, density, force_dense=dense_phase, rank=group.rank()
    )
    compress_time.stop()
    stats.add(packet)
    stats.work.append(compress_time)
    if bucket.is_last():
        state.last_step, state._current = stats, None
        state.iteration += 1

    if packet.kind == "dense":
        received = packet.payload
        future = dist.all_reduce(received, group=group, async_op=True).get_future()
    elif packet.kind == "scatter":
        # Phase 1 completes here, before DDP hands over the next bucket: its all-gather is issued from this
        # thread, so every rank issues the collectives in the same order (a callback chain could race on gloo).
        rows = torch.empty_like(packet.payload)
        dist.all_to_all_single(rows, packet.payload, group=group)
        reduce_time = Stopwatch(buffer.device)
        reduce_time.start()
        row = state.compressor.reduce(packet, rows)
        reduce_time.stop()
        stats.work.append(reduce_time)
        received = row.new_empty(world_size * row.numel())
        future = dist.all_gather_into_tensor(received, row, group=group, async_op=True).get_future()
    else:
        received = packet.payload.new_empty(world_size * packet.payload.numel())
        future = dist.all_gather_into_tensor(received, packet.payload, group=group, async_op=True).get_future()

    def finish(_: torch.futures.Future) -> torch.Tensor:
        decompress_time = Stopwatch(buffer.device)
        decompress_time.start()
        buffer.copy_(state.compressor.decompress(packet, received, world_size))
        decompress_time.stop()
        stats.work.append(decompress_time)
        return buffer

    return future.then(finish)
