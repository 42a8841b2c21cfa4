"""The DGC compressor: per-parameter momentum and residual state, and each rank's half of an exchange.

Pure tensor code with no process group: :meth:`DGCCompressor.compress` turns one bucket's local gradient
into a message and updates the local state, :meth:`DGCCompressor.decompress` turns the messages of all
ranks into the averaged update. The communication hook (``hook.py``) runs the collective in between, and
tests can simulate N ranks in one process by calling both directly.

Per rank k and element, every step (Lin et al., ICLR 2018, Algorithm 1 with section 3):

1. local clipping: each tensor's gradient is rescaled to norm ``clip_norm * N**-0.5`` if larger;
2. weight decay folded in: ``g += wd * w`` (as ``torch.optim.SGD`` does, so it keeps its momentum);
3. momentum correction: ``u = m*u + g; v += u``  (Nesterov: ``u = m*(u + g); v += u + g``);
4. the k largest ``|v|`` of each compressed tensor are sent and cleared from ``v`` (only the rounding error
   stays when values travel in 16 or 8 bits), and with momentum factor masking also from ``u``;
5. the update is the sum of all ranks' sparse vectors divided by N; SGD applies it with its lr and no
   momentum of its own.

With ``aggregation="reduce_scatter"`` steps 4-5 become the global top-k of ``scatter.py``: a rank clears
(and masks) only the entries it sent that the global selection kept, in :meth:`DGCCompressor.decompress`.

1-D and tiny tensors are sent in full every step: their ``v`` is emptied each time, so their update is the
plain momentum of the averaged gradient. Sending every entry with no masking is also what the dense path
does (the first steps, and buckets where a dense all-reduce moves fewer bytes than the sparse all-gather):
there DGC is exactly momentum SGD, and the local ``u`` carries on into the sparse steps.

State is flat per bucket (one fused op per step instead of one per tensor) but owned by parameter: when
DDP rebuilds its buckets after the first step, each parameter's slices move to its new bucket.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from strategies.dgc import codec, wire
from strategies.dgc.codec import IndexCoding
from strategies.dgc.scatter import ScatterPlan
from strategies.dgc.selection import Selection, TopKPlan
from strategies.dgc.timing import Stopwatch

Aggregation = Literal["allgather", "reduce_scatter"]
AGGREGATIONS: tuple[str, ...] = ("allgather", "reduce_scatter")


@dataclass(frozen=True)
class CompressorSettings:
    """Settings of :class:`DGCCompressor` (the strategy documents them for users).

    Args:
        momentum_masking: clear the momentum of sent entries (the paper's momentum factor masking).
        clip_norm: per-tensor gradient norm bound before scaling by ``N**-0.5``; ``None`` for no clipping.
        value_dtype: dtype of the values on the wire.
        selection: ``tensor`` (per-tensor top-k, the paper) or ``bucket`` (one top-k per bucket).
        min_compress_numel: tensors with fewer elements, and all tensors with ``dim <= 1``, are sent dense.
        dense_fallback: all-reduce a bucket densely when that moves no more bytes than the sparse exchange.
        aggregation: ``allgather`` (the paper: every rank receives every rank's entries) or ``reduce_scatter``
            (a global top-k over N index ranges whose traffic per rank does not grow with N; ``scatter.py``).
        index_coding: ``int32`` or ``block16`` (16-bit offsets in 64 Ki blocks plus a count per block; ``codec.py``).
    """

    momentum_masking: bool = True
    clip_norm: float | None = None
    value_dtype: torch.dtype = torch.float32
    selection: Selection = "tensor"
    min_compress_numel: int = 1024
    dense_fallback: bool = True
    aggregation: Aggregation = "allgather"
    index_coding: IndexCoding = "int32"

    def __post_init__(self) -> None:
        # Checked here so that a bad value stops the strategy's constructor, not every rank after the spawn.
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(
                f"clip_norm must be positive (a per-tensor norm bound), got {self.clip_norm}; "
                "use clip_norm=None for no clipping"
            )
        if self.min_compress_numel < 1:
            raise ValueError(f"min_compress_numel must be >= 1, got {self.min_compress_numel}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if self.index_coding not in codec.INDEX_CODINGS:
            raise ValueError(f"index_coding must be one of {codec.INDEX_CODINGS}, got {self.index_coding!r}")
        if self.aggregation == "reduce_scatter" and self.selection != "tensor":
            raise ValueError("aggregation='reduce_scatter' splits each tensor's budget over ranges: use selection='tensor'")


class BucketLayout:
    """Momentum ``u`` and residual ``v`` of one bucket, flat in the order of the bucket's gradient buffer."""

    def __init__(self, params: Sequence[torch.Tensor], device: torch.device, dtype: torch.dtype, min_compress_numel: int):
        self.params = list(params)
        self.numels = [p.numel() for p in self.params]
        self.starts = [0]
        for n in self.numels[:-1]:
            self.starts.append(self.starts[-1] + n)
        self.numel = sum(self.numels)
        self.dtype = dtype
        self.compressed = [p.dim() > 1 and p.numel() >= min_compress_numel for p in self.params]
        self.u = torch.zeros(self.numel, device=device, dtype=dtype)
        self.v = torch.zeros(self.numel, device=device, dtype=dtype)
        dense = [torch.arange(s, s + n) for s, n, c in zip(self.starts, self.numels, self.compressed) if not c]
        self.dense_tensors = [(s, n) for s, n, c in zip(self.starts, self.numels, self.compressed) if not c]
        self.dense_numels = [n for _, n in self.dense_tensors]  # fp8 scale segments of the dense values
        self.dense_index = (torch.cat(dense) if dense else torch.empty(0, dtype=torch.long)).to(device)
        self.dense_numel = int(self.dense_index.numel())
        self.owned = len(self.params)  # parameters whose state still lives here
        self._plans: dict[float, TopKPlan] = {}
        self._scatter_plans: dict[tuple[float, int], ScatterPlan] = {}

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [flat.narrow(0, s, n).view(p.shape) for s, n, p in zip(self.starts, self.numels, self.params)]

    def plan(self, density: float, selection: Selection) -> TopKPlan:
        plan = self._plans.get(density)
        if plan is None:
            members = [(s, n) for s, n, c in zip(self.starts, self.numels, self.compressed) if c]
            plan = TopKPlan([s for s, _ in members], [n for _, n in members], density, selection, self.u.device)
            self._plans[density] = plan
        return plan

    def scatter_plan(self, density: float, world_size: int, value_dtype: torch.dtype, coding: IndexCoding) -> ScatterPlan:
        plan = self._scatter_plans.get((density, world_size))
        if plan is None:
            members = [(s, n) for s, n, c in zip(self.starts, self.numels, self.compressed) if c]
            plan = ScatterPlan([s for s, _ in members], [n for _, n in members], self.dense_tensors, world_size,
                               density, value_dtype, coding, self.u.device)
            self._scatter_plans[(density, world_size)] = plan
        return plan


@dataclass
class Packet:
    """One rank's outgoing data for one bucket, and what is needed to decode the answer.

    ``kind``: ``dense``: ``payload`` holds the whole bucket divided by N, to be all-reduced (summed);
    ``allgather``: ``payload`` is this rank's message (``wire.py``), to be all-gathered; ``scatter``:
    ``payload`` holds one row per rank ``[N, row_bytes]``, to be exchanged by an all-to-all, then
    :meth:`DGCCompressor.reduce` makes the row to all-gather. ``wire_bytes``: what this rank sends to the
    others in the whole exchange, with ring and pairwise algorithms.
    """

    layout: BucketLayout
    kind: str
    payload: torch.Tensor
    k: int
    density: float
    selection_time: Stopwatch | None
    wire_bytes: float = 0.0
    world_size: int = 1
    rank: int = 0
    segments: list[int] | None = None  # allgather: entries per tensor (one fp8 scale each), in bucket order
    scatter: ScatterPlan | None = None
    sent_index: torch.Tensor | None = None  # scatter: bucket positions this rank sent, -1 for none
    sent_values: torch.Tensor | None = None  # scatter: the values as receivers decode them

    @property
    def dense(self) -> bool:
        return self.kind == "dense"

    @property
    def payload_bytes(self) -> int:
        return self.payload.numel() * self.payload.element_size()


class DGCCompressor:
    """Deep Gradient Compression for the buckets of one DDP model on one rank.

    Args:
        settings: see :class:`CompressorSettings`.
        param_names: name of each parameter, used as its key in :meth:`state_dict`.
    """

    def __init__(self, settings: CompressorSettings, param_names: Mapping[torch.Tensor, str] | None = None) -> None:
        self.settings = settings
        self._names = {id(p): name for p, name in (param_names or {}).items()}
        self.momentum = 0.0
        self.nesterov = False
        self._weight_decay: dict[int, float] = {}
        self._layouts: dict[tuple[int, ...], BucketLayout] = {}
        self._owner: dict[int, tuple[BucketLayout, int]] = {}
        self._pending: dict[str, dict[str, torch.Tensor]] = {}

    def configure_optimizer(
        self, momentum: float, nesterov: bool = False, weight_decay: Mapping[torch.Tensor, float] | None = None
    ) -> None:
        """Take over SGD's momentum, Nesterov flag and per-parameter weight decay."""
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs a non-zero momentum")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self._weight_decay = {id(p): float(wd) for p, wd in (weight_decay or {}).items() if wd}

    # --- state owned by parameter ------------------------------------------------------------------------

    def layout(self, params: Sequence[torch.Tensor], device: torch.device, dtype: torch.dtype) -> BucketLayout:
        key = tuple(id(p) for p in params)
        layout = self._layouts.get(key)
        if layout is None:
            layout = BucketLayout(params, device, dtype, self.settings.min_compress_numel)
            self._adopt(layout)
            self._layouts[key] = layout
        return layout

    def _adopt(self, layout: BucketLayout) -> None:
        """Move each parameter's state (from an older bucket, or restored) into ``layout``."""
        for i, p in enumerate(layout.params):
            start, n = layout.starts[i], layout.numels[i]
            previous = self._owner.get(id(p))
            if previous is not None:
                old, j = previous
                a = old.starts[j]
                layout.u[start : start + n].copy_(old.u[a : a + n])
                layout.v[start : start + n].copy_(old.v[a : a + n])
                old.owned -= 1
            else:
                restored = self._pending.pop(self._names.get(id(p), ""), None)
                if restored is not None:
                    _check_numel(self._names[id(p)], restored, n)
                    layout.u[start : start + n].copy_(restored["momentum"].reshape(-1))
                    layout.v[start : start + n].copy_(restored["residual"].reshape(-1))
            self._owner[id(p)] = (layout, i)
        self._layouts = {key: lay for key, lay in self._layouts.items() if lay.owned > 0}

    def state_dict(self) -> dict[str, Any]:
        """Per-parameter momentum and residual of this rank, keyed by parameter name, on the CPU."""
        params: dict[str, dict[str, torch.Tensor]] = {}
        for pid, (layout, i) in self._owner.items():
            name = self._names.get(pid)
            if name is None:
                raise RuntimeError("DGC state belongs to a parameter without a name; pass param_names to the compressor")
            s, n = layout.starts[i], layout.numels[i]
            params[name] = {
                "momentum": layout.u[s : s + n].detach().to("cpu", copy=True),
                "residual": layout.v[s : s + n].detach().to("cpu", copy=True),
            }
        for name, restored in self._pending.items():
            params.setdefault(name, restored)
        return {"params": params}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; parameters not yet seen in a bucket get theirs when they are."""
        remaining = dict(state["params"])
        for pid, (layout, i) in self._owner.items():
            name = self._names.get(pid)
            restored = remaining.pop(name, None) if name is not None else None
            if restored is None:
                continue
            s, n = layout.starts[i], layout.numels[i]
            _check_numel(name, restored, n)
            layout.u[s : s + n].copy_(restored["momentum"].reshape(-1))
            layout.v[s : s + n].copy_(restored["residual"].reshape(-1))
        self._pending = remaining

    # --- one exchange ---------------------------------------------------------------------------------------

    def compress(
        self,
        params: Sequence[torch.Tensor],
        grad: torch.Tensor,
        world_size: int,
        density: float,
        force_dense: bool = False,
        rank: int = 0,
    ) -> Packet:
        """Update this rank's state with the flat bucket gradient ``grad`` and build its outgoing packet.

        ``grad`` may be overwritten (the hook passes DDP's bucket buffer, which receives the update anyway).
        """
        state_dtype = torch.float64 if grad.dtype == torch.float64 else torch.float32
        layout = self.layout(params, grad.device, state_dtype)
        if grad.numel() != layout.numel:
            raise RuntimeError(f"bucket buffer has {grad.numel()} elements but its parameters {layout.numel}")
        g = grad if grad.dtype == state_dtype else grad.to(state_dtype)
        self._prepare_gradient(layout, g, world_size)
        self._correct_momentum(layout, g)

        settings = self.settings
        density = min(density, 1.0)
        if settings.aggregation == "reduce_scatter":
            plan = layout.scatter_plan(density, world_size, settings.value_dtype, settings.index_coding)
            sparse_wire, k = plan.wire_bytes, plan.k
        else:
            topk = layout.plan(density, settings.selection)
            k = topk.k
            # per-tensor top-k sends a known count per tensor; bucket top-k does not, so one fp8 scale for all
            segments = list(topk.ks) if settings.selection == "tensor" else [k]
            payload = wire.row_bytes(k, layout.numel, layout.dense_numel, settings.value_dtype, settings.index_coding,
                                     len(segments), len(layout.dense_numels))
            sparse_wire = wire.allgather_wire_bytes(payload, world_size)
        dense_bytes = layout.numel * codec.summable_dtype(settings.value_dtype).itemsize
        if force_dense or (settings.dense_fallback and wire.prefer_dense(sparse_wire, layout.numel, settings.value_dtype, world_size)):
            wire_bytes = wire.allreduce_wire_bytes(dense_bytes, world_size)
            return Packet(layout, "dense", self._take_all(layout, world_size), layout.numel, density, None, wire_bytes,
                          world_size, rank)

        timer = Stopwatch(g.device)
        timer.start()
        score = layout.v.abs()
        if settings.aggregation == "reduce_scatter":
            slots, index = plan.select_local(score)
            timer.stop()
            return self._scatter_packet(layout, plan, slots, index, density, timer, world_size, rank)
        index = topk.select(score)
        timer.stop()
        index = torch.sort(index).values  # grouped by tensor in bucket order, as the fp8 segments are
        index_code, _ = codec.encode_indices(index.unsqueeze(0), layout.numel, settings.index_coding)
        value_code = self._take(layout, index, segments)
        if settings.momentum_masking:
            layout.u.index_fill_(0, index, 0.0)
        dense_code = self._take(layout, layout.dense_index, layout.dense_numels)
        message = torch.cat([index_code[0], value_code, dense_code])
        return Packet(layout, "allgather", message, k, density, timer, sparse_wire, world_size, rank, segments)

    def _scatter_packet(self, layout: BucketLayout, plan: ScatterPlan, slots: torch.Tensor, index: torch.Tensor,
                        density: float, timer: Stopwatch, world_size: int, rank: int) -> Packet:
        """Phase 1 of ``reduce_scatter``: one row per owner; the residual keeps the entries until the owners answer."""
        v = layout.v
        values = torch.where(index >= 0, v[index.clamp(min=0)], torch.zeros((), dtype=v.dtype, device=v.device))
        dense = plan.dense_rows(v)
        rows, order, values_sent, dense_sent = plan.encode(slots, values, dense)
        if order is not None:
            index = torch.gather(index, 1, order)
        # Dense values are always applied: only their rounding error stays. Sparse entries wait for the selection.
        inside = plan.dense_positions >= 0
        v.index_copy_(0, plan.dense_positions[inside], (dense - dense_sent)[inside])
        return Packet(layout, "scatter", rows, plan.k, density, timer, plan.wire_bytes, world_size, rank, None, plan,
                      index, values_sent)

    def reduce(self, packet: Packet, received: torch.Tensor) -> torch.Tensor:
        """Phase 2 of ``reduce_scatter`` on the owner: sum the rows ``[N, row_bytes]`` received for this rank's
        range, select the range's global top entries and return them as this rank's row to all-gather."""
        plan, layout = packet.scatter, packet.layout
        assert plan is not None
        slots, values, dense = plan.decode(received)
        summed = torch.zeros(plan.slots, dtype=layout.dtype, device=received.device)
        summed.index_add_(0, slots.reshape(-1), values.reshape(-1).to(layout.dtype))
        chosen = plan.select_global(summed)
        dense_sum = dense.to(layout.dtype).sum(0)
        row, order, values_sent, dense_sent = plan.encode(chosen.unsqueeze(0), summed[chosen].unsqueeze(0),
                                                          dense_sum.unsqueeze(0))
        if order is not None:
            chosen = chosen[order[0]]
        # The owner keeps the rounding error of the sums it sends back, so no part of any gradient is lost.
        error = summed[chosen] - values_sent[0]
        position = plan.bucket_index(chosen, packet.rank)
        kept = position >= 0
        layout.v.index_add_(0, position[kept], error[kept])
        share = plan.dense_positions[packet.rank]
        inside = share >= 0
        layout.v.index_add_(0, share[inside], (dense_sum - dense_sent[0])[inside])
        return row[0]

    def decompress(self, packet: Packet, received: torch.Tensor, world_size: int) -> torch.Tensor:
        """Averaged update of the bucket (flat, state dtype) from the collective's result ``received``."""
        layout = packet.layout
        if packet.kind == "dense":
            return received.to(layout.dtype)
        update = torch.zeros(layout.numel, device=layout.u.device, dtype=layout.dtype)
        settings = self.settings
        if packet.kind == "scatter":
            plan = packet.scatter
            assert plan is not None and packet.sent_index is not None and packet.sent_values is not None
            slots, values, dense = plan.decode(received.view(world_size, -1))
            owners = torch.arange(world_size, device=received.device).unsqueeze(1)
            position = plan.bucket_index(slots, owners)
            kept = position >= 0
            update.index_copy_(0, position[kept], values[kept].to(layout.dtype))
            inside = plan.dense_positions >= 0
            update.index_copy_(0, plan.dense_positions[inside], dense[inside].to(layout.dtype))
            # Clear what this rank sent and the global selection kept; what it dropped stays in the residual.
            selected = torch.zeros(layout.numel + 1, dtype=torch.bool, device=update.device)
            selected[position[kept]] = True
            sent = packet.sent_index.reshape(-1)
            applied = selected[torch.where(sent >= 0, sent, layout.numel)]
            layout.v.index_add_(0, sent[applied], -packet.sent_values.reshape(-1)[applied])
            if settings.momentum_masking:
                layout.u.index_fill_(0, sent[applied], 0.0)
            return update.div_(world_size)
        k, vdtype, segments = packet.k, settings.value_dtype, packet.segments
        rows = received.view(world_size, -1)
        index_code, value_code, dense_code = wire.split_row(
            rows,
            codec.index_bytes(k, layout.numel, settings.index_coding),
            codec.value_bytes(k, vdtype, len(segments)),
            codec.value_bytes(layout.dense_numel, vdtype, len(layout.dense_numels)),
        )
        index = codec.decode_indices(index_code, k, layout.numel, settings.index_coding)
        values = codec.decode_values(value_code, k, vdtype, segments)
        update.index_add_(0, index.reshape(-1), values.reshape(-1).to(layout.dtype))
        if layout.dense_numel:
            dense_values = codec.decode_values(dense_code, layout.dense_numel, vdtype, layout.dense_numels)
            update.index_copy_(0, layout.dense_index, dense_values.to(layout.dtype).sum(0))
        return update.div_(world_size)

    # --- steps of the algorithm -----------------------------------------------------------------------------

    def _prepare_gradient(self, layout: BucketLayout, g: torch.Tensor, world_size: int) -> None:
        views = layout.views(g)
        clip = self.settings.clip_norm
        if clip is not None:
            # The paper clips before accumulation, with each rank's share N^-1/2 of the global bound.
            bound = clip / math.sqrt(world_size)
            norms = torch.stack(torch._foreach_norm(views))
            scale = (bound / (norms + 1e-6)).clamp_(max=1.0)
            torch._foreach_mul_(views, list(scale.unbind(0)))
        by_decay: dict[float, list[int]] = defaultdict(list)
        for i, p in enumerate(layout.params):
            wd = self._weight_decay.get(id(p))
            if wd:
                by_decay[wd].append(i)
        for wd, members in by_decay.items():
            torch._foreach_add_(
                [views[i] for i in members], [layout.params[i].detach().to(g.dtype) for i in members], alpha=wd
            )

    def _correct_momentum(self, layout: BucketLayout, g: torch.Tensor) -> None:
        u, v, m = layout.u, layout.v, self.momentum
        if self.nesterov:
            u.add_(g).mul_(m)
            v.add_(u).add_(g)
        else:
            u.mul_(m).add_(g)
            v.add_(u)

    def _take(self, layout: BucketLayout, index: torch.Tensor, segments: Sequence[int]) -> torch.Tensor:
        """Coded values of ``v[index]``, leaving in ``v`` only what the wire dtype could not carry."""
        values = layout.v[index]
        code, sent = codec.encode_values(values.unsqueeze(0), self.settings.value_dtype, segments)
        if self.settings.value_dtype == layout.dtype:
            layout.v.index_fill_(0, index, 0.0)
        else:
            layout.v.index_copy_(0, index, values - sent[0])
        return code[0]

    def _take_all(self, layout: BucketLayout, world_size: int) -> torch.Tensor:
        """The whole residual, pre-divided by N so that the all-reduce's sum is the average."""
        share = layout.v / world_size
        dtype = codec.summable_dtype(self.settings.value_dtype)
        code, sent = codec.encode_values(share.unsqueeze(0), dtype)
        if dtype == layout.dtype:
            layout.v.zero_()
        else:
            layout.v.sub_(sent[0] * world_size)
        return code[0].view(dtype)  # the values as sent, without casting the decoded copy back


def _check_numel(name: str, restored: Mapping[str, torch.Tensor], numel: int) -> None:
    if restored["momentum"].numel() != numel or restored["residual"].numel() != numel:
        raise ValueError(
            f"DGC state of {name!r} has {restored['momentum'].numel()} elements but the parameter has {numel}: "
            "the checkpoint belongs to a different model"
        )
