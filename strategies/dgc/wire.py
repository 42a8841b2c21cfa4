"""What DGC puts on the wire: the message layouts, their sizes, and when a dense all-reduce is cheaper.

Every message has a size known from the bucket's shapes, the density and the number of ranks, identical on
every rank, so fixed-size collectives move it without padding or a size exchange. One message (a row) is::

    [ coded indices | coded values | coded dense values ]        (codes: ``codec.py``)

- ``allgather`` (the paper): each rank's row holds its k selected entries (indices into the bucket) and the
  bucket's 1-D and tiny tensors in full; one ``all_gather`` per bucket.
- ``reduce_scatter`` (``scatter.py``): phase 1 sends each rank one row with the entries it selected in that
  rank's index range and that range's share of the dense values (``all_to_all``); phase 2 all-gathers every
  range's global selection, one row per rank.

Byte counts per rank and step, with ring (all-gather, all-reduce) and pairwise (all-to-all) algorithms:
``allgather_wire_bytes``, ``allreduce_wire_bytes``, ``scatter_wire_bytes``.
"""

from __future__ import annotations

import torch

from strategies.dgc import codec
from strategies.dgc.codec import FP8, VALUE_DTYPES, IndexCoding  # noqa: F401  (re-exported for callers)

DENSE_REFERENCE_BYTES = 4  # compression ratios are quoted against a dense fp32 gradient


def row_bytes(
    k: int,
    space: int,
    dense: int,
    value_dtype: torch.dtype,
    index_coding: IndexCoding = "int32",
    value_segments: int = 1,
    dense_segments: int = 1,
) -> int:
    """Bytes of one row: ``k`` coded (index, value) pairs into ``[0, space)`` plus ``dense`` dense values.

    ``value_segments``, ``dense_segments``: how many tensors the values and the dense values come from (fp8
    sends one scale per tensor).
    """
    return (
        codec.index_bytes(k, space, index_coding)
        + codec.value_bytes(k, value_dtype, value_segments)
        + codec.value_bytes(dense, value_dtype, dense_segments)
    )


def sparse_payload_bytes(
    k: int, dense: int, value_dtype: torch.dtype, index_coding: IndexCoding = "int32", space: int = 1
) -> int:
    """Bytes one rank contributes to the paper's all-gather for one bucket of ``space`` elements (one fp8 scale)."""
    return row_bytes(k, space, dense, value_dtype, index_coding)


def allgather_wire_bytes(payload: int, world_size: int) -> float:
    """Bytes each rank sends (and receives) in a ring all-gather of ``payload`` bytes per rank."""
    return (world_size - 1) * payload


def allreduce_wire_bytes(payload: int, world_size: int) -> float:
    """Bytes each rank sends (and receives) in a ring all-reduce (reduce-scatter + all-gather)."""
    return 2 * (world_size - 1) / world_size * payload


def scatter_wire_bytes(phase1_row: int, phase2_row: int, world_size: int) -> float:
    """Bytes each rank sends in the two phases of ``reduce_scatter``: N-1 rows to the others, then a ring all-gather."""
    return (world_size - 1) * (phase1_row + phase2_row)


def prefer_dense(sparse_wire: float, numel: int, value_dtype: torch.dtype, world_size: int) -> bool:
    """Whether a dense all-reduce of the whole bucket moves no more bytes than the sparse exchange.

    The paper's all-gather grows with the number of ranks while the all-reduce does not, so early warm-up
    densities (25% at 4 ranks or more) and large clusters fall back to dense.
    """
    dense = allreduce_wire_bytes(numel * codec.summable_dtype(value_dtype).itemsize, world_size)
    return sparse_wire >= dense


def split_row(rows: torch.Tensor, *sizes: int) -> list[torch.Tensor]:
    """Cut ``[R, sum(sizes)]`` uint8 rows into consecutive parts."""
    parts, start = [], 0
    for size in sizes:
        parts.append(rows[:, start : start + size])
        start += size
    return parts
