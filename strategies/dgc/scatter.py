"""Sparse reduce-scatter aggregation: a global top-k whose traffic per rank does not grow with the ranks.

The paper's exchange all-gathers every rank's k entries, so each rank receives (N-1) k of them. Here, as
in gTop-k (Shi et al., ICDCS 2019) and Ok-Topk (Li and Hoefler, PPoPP 2022), each bucket's compressed
tensors are cut into N contiguous index ranges, range j owned by rank j, and each tensor's budget
``k_t = ceil(density * n_t)`` is shared out as ``c_t = ceil(k_t / N)`` entries per range:

1. every rank selects, in each range of each tensor, its ``c_t`` largest ``|v|`` and sends them to the
   range's owner, with that owner's share of the dense (1-D and tiny) values (one ``all_to_all``);
2. each owner sums what it received (a sparse reduce-scatter), keeps in each range the ``c_t`` entries of
   largest summed magnitude (the global selection) and sums its share of the dense values;
3. every owner's selection is all-gathered; each rank applies the selections of all ranges, divided by N.

Per rank and step that is about ``2 (N-1)/N`` times one rank's k entries and dense values, like a ring
all-reduce of the sparse vector, instead of ``(N-1)`` times. With N = 1 it is the paper's per-tensor top-k.

Error feedback keeps its meaning. A rank clears from its residual ``v`` (and, with masking, from its
momentum ``u``) only the entries it sent that the global selection kept; entries it sent that were dropped
stay in ``v``, untouched. Each rounding error stays where it was made: the sender keeps the error of its own
values, the owner adds the error of the sums it sends back to its own ``v``, so nothing is lost.

Where this differs from an exact global top-k: each range has a fixed budget (so every message has a size
known in advance), so a range holding many large entries sends only its share and keeps the rest for later
steps; a tensor sends ``N c_t >= k_t`` entries (up to N-1 more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from strategies.dgc import codec, wire
from strategies.dgc.codec import IndexCoding
from strategies.dgc.selection import tensor_k


@dataclass(frozen=True)
class _Range:
    start: int  # first element of the tensor in the bucket
    numel: int
    width: int  # s = ceil(numel / N): elements per range (the last ranges may be shorter or empty)
    budget: int  # c = min(s, ceil(k / N)): entries per range
    slot: int  # first slot of this tensor in a range's slot space


class ScatterPlan:
    """The split of one bucket's compressed tensors into N ranges, and the sizes of both phases' messages.

    A range's slot space concatenates the range's part of every compressed tensor (``width`` slots each, the
    missing tail of a short range included), so a slot maps to a bucket element by arithmetic alone.

    Args:
        starts: start of each compressed tensor in the bucket's flat buffer.
        numels: element count of each compressed tensor.
        dense: (start, numel) of each dense tensor (1-D and tiny: sent in full, each cut into N shares).
        world_size: number of ranks N.
        density: fraction of each tensor's entries kept (before the split into ranges).
        value_dtype: wire dtype of the values.
        index_coding: code of the slot indices.
        device: device of the bucket.
    """

    def __init__(
        self,
        starts: list[int],
        numels: list[int],
        dense: list[tuple[int, int]],
        world_size: int,
        density: float,
        value_dtype: torch.dtype,
        index_coding: IndexCoding,
        device: torch.device,
    ) -> None:
        n_ranks = world_size
        self.world_size = n_ranks
        self.ranges: list[_Range] = []
        slot = 0
        for start, numel in zip(starts, numels):
            width = math.ceil(numel / n_ranks)
            budget = min(width, math.ceil(tensor_k(numel, density) / n_ranks))
            self.ranges.append(_Range(start, numel, width, budget, slot))
            slot += width
        self.slots = slot
        self.k = sum(r.budget for r in self.ranges)  # entries per (sender, owner) pair and per owner's selection
        self.budgets = [r.budget for r in self.ranges]  # fp8 scale segments of the values
        self.dense_widths = [math.ceil(n / n_ranks) for _, n in dense]  # ... and of the dense share
        self.dense_share = sum(self.dense_widths)
        # Bucket position of each dense share entry, row j for rank j's share; -1 past a tensor's end.
        columns = []
        for (start, numel), width in zip(dense, self.dense_widths):
            position = torch.arange(n_ranks * width).view(n_ranks, width)
            columns.append(torch.where(position < numel, position + start, torch.full_like(position, -1)))
        self.dense_positions = (torch.cat(columns, 1) if columns else torch.empty(n_ranks, 0, dtype=torch.long)).to(device)
        self.value_dtype = value_dtype
        self.index_coding = index_coding
        self.row_bytes = wire.row_bytes(self.k, max(self.slots, 1), self.dense_share, value_dtype, index_coding,
                                        len(self.budgets), len(self.dense_widths))
        self.wire_bytes = wire.scatter_wire_bytes(self.row_bytes, self.row_bytes, n_ranks)
        self._slot_starts = torch.tensor([r.slot for r in self.ranges], device=device, dtype=torch.long)
        self._tensor_starts = torch.tensor([r.start for r in self.ranges], device=device, dtype=torch.long)
        self._widths = torch.tensor([r.width for r in self.ranges], device=device, dtype=torch.long)
        self._numels = torch.tensor([r.numel for r in self.ranges], device=device, dtype=torch.long)

    # --- slots and bucket positions -------------------------------------------------------------------------

    def bucket_index(self, slots: torch.Tensor, owner: torch.Tensor | int) -> torch.Tensor:
        """Bucket positions of ``slots`` in the range of ``owner`` (broadcast); -1 where a slot lies past its tensor."""
        tensor = torch.searchsorted(self._slot_starts, slots, right=True) - 1
        within = slots - self._slot_starts[tensor] + owner * self._widths[tensor]
        valid = within < self._numels[tensor]
        return torch.where(valid, self._tensor_starts[tensor] + within, torch.full_like(slots, -1))

    def select_local(self, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each range's ``c_t`` largest ``score`` entries of each tensor: slots ``[N, k]`` and bucket positions.

        Positions past a tensor's end (the padded tail of the last ranges) are never preferred over real ones;
        when a range is shorter than its budget they fill the row, with position -1.
        """
        n_ranks = self.world_size
        if not self.ranges:
            empty = torch.empty(n_ranks, 0, dtype=torch.long, device=score.device)
            return empty, empty.clone()
        slot_parts, index_parts = [], []
        for r in self.ranges:
            segment = score.narrow(0, r.start, r.numel)
            padded = n_ranks * r.width
            if padded > r.numel:
                segment = torch.cat([segment, segment.new_full((padded - r.numel,), -1.0)])
            within = torch.topk(segment.view(n_ranks, r.width), r.budget, dim=1, sorted=False).indices
            position = within + r.width * torch.arange(n_ranks, device=score.device).unsqueeze(1)
            slot_parts.append(within + r.slot)
            index_parts.append(torch.where(position < r.numel, position + r.start, torch.full_like(position, -1)))
        return torch.cat(slot_parts, 1), torch.cat(index_parts, 1)

    # --- rows -------------------------------------------------------------------------------------------------

    def encode(self, slots: torch.Tensor, values: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows ``[R, row_bytes]`` from slots and values ``[R, k]`` and dense values ``[R, dense_share]``.

        Returns the rows, the order applied to each row's entries (``None``: unchanged), and the decoded values
        and dense values (what receivers will read, for error feedback).
        """
        index_code, order = codec.encode_indices(slots, max(self.slots, 1), self.index_coding)
        if order is not None:  # sorted slots stay grouped by tensor, in tensor order: the segments still hold
            values = torch.gather(values, 1, order)
        value_code, values_sent = codec.encode_values(values, self.value_dtype, self.budgets)
        dense_code, dense_sent = codec.encode_values(dense, self.value_dtype, self.dense_widths)
        return torch.cat([index_code, value_code, dense_code], 1), order, values_sent, dense_sent

    def decode(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Slots ``[R, k]``, values ``[R, k]`` and dense values ``[R, dense_share]`` (float32) of ``rows``."""
        sizes = (
            codec.index_bytes(self.k, max(self.slots, 1), self.index_coding),
            codec.value_bytes(self.k, self.value_dtype, len(self.budgets)),
            codec.value_bytes(self.dense_share, self.value_dtype, len(self.dense_widths)),
        )
        index_code, value_code, dense_code = wire.split_row(rows, *sizes)
        slots = codec.decode_indices(index_code, self.k, max(self.slots, 1), self.index_coding)
        values = codec.decode_values(value_code, self.k, self.value_dtype, self.budgets)
        dense = codec.decode_values(dense_code, self.dense_share, self.value_dtype, self.dense_widths)
        return slots, values, dense

    def dense_rows(self, flat: torch.Tensor) -> torch.Tensor:
        """The dense tensors of the bucket buffer ``flat``, each cut into N shares: ``[N, dense_share]``, 0-padded."""
        position = self.dense_positions
        return torch.where(position >= 0, flat[position.clamp(min=0)], torch.zeros((), dtype=flat.dtype, device=flat.device))

    def select_global(self, summed: torch.Tensor) -> torch.Tensor:
        """Slots ``[k]`` of the owner's global selection: each tensor's ``c_t`` largest summed magnitudes."""
        score = summed.abs()
        return torch.cat([torch.topk(score.narrow(0, r.slot, r.width), r.budget, sorted=False).indices + r.slot
                          for r in self.ranges]) if self.ranges else summed.new_empty(0, dtype=torch.long)
