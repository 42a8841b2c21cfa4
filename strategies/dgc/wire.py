"""What DGC puts on the wire: the message layout, its size, and when a dense all-reduce is cheaper.

One sparse message per bucket and rank, identical in size on every rank (same k everywhere), so a single
fixed-size ``all_gather`` moves it without padding or a size exchange::

    [ k int32 indices | k values | d dense values ]      (values in fp32, fp16 or bf16)

The indices address the bucket's flat gradient; the dense part carries the bucket's 1-D and tiny tensors
in full. Everything is packed as bytes so that the three parts travel in one collective.
"""

from __future__ import annotations

import torch

INDEX_DTYPE = torch.int32
INDEX_BYTES = 4
DENSE_REFERENCE_BYTES = 4  # compression ratios are quoted against a dense fp32 gradient

VALUE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def value_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def sparse_payload_bytes(k: int, dense: int, value_dtype: torch.dtype) -> int:
    """Bytes one rank contributes for one bucket: k (index, value) pairs plus ``dense`` dense values."""
    vb = value_bytes(value_dtype)
    return k * (INDEX_BYTES + vb) + dense * vb


def allgather_wire_bytes(payload: int, world_size: int) -> float:
    """Bytes each rank sends (and receives) in a ring all-gather of ``payload`` bytes per rank."""
    return (world_size - 1) * payload


def allreduce_wire_bytes(payload: int, world_size: int) -> float:
    """Bytes each rank sends (and receives) in a ring all-reduce (reduce-scatter + all-gather)."""
    return 2 * (world_size - 1) / world_size * payload


def prefer_dense(k: int, dense: int, numel: int, value_dtype: torch.dtype, world_size: int) -> bool:
    """Whether a dense all-reduce of the whole bucket moves no more bytes than the sparse all-gather.

    The all-gather's volume grows with the number of ranks while the all-reduce's does not, so early
    warm-up densities (25% at 4 ranks or more) and large clusters fall back to dense.
    """
    sparse = allgather_wire_bytes(sparse_payload_bytes(k, dense, value_dtype), world_size)
    full = allreduce_wire_bytes(numel * value_bytes(value_dtype), world_size)
    return sparse >= full


def quantize(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``values`` in the wire dtype; fp16 saturates instead of overflowing to inf (which would poison residuals)."""
    if dtype == torch.float16:
        limit = torch.finfo(torch.float16).max
        values = values.clamp(-limit, limit)
    return values.to(dtype)


def pack(indices: torch.Tensor, values: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """One flat uint8 message from int32 ``indices`` and wire-dtype ``values`` and ``dense``."""
    return torch.cat(
        [indices.to(INDEX_DTYPE).view(torch.uint8), values.reshape(-1).view(torch.uint8), dense.reshape(-1).view(torch.uint8)]
    )


def unpack(
    gathered: torch.Tensor, world_size: int, k: int, dense: int, value_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split ``world_size`` concatenated messages into indices ``[N*k]``, values ``[N*k]``, dense ``[N, dense]``.

    Each part is copied into fresh memory before its bytes are reinterpreted, because a part of a row need
    not start at an address aligned for its dtype.
    """
    vb = value_bytes(value_dtype)
    rows = gathered.view(world_size, -1)
    a, b = k * INDEX_BYTES, k * (INDEX_BYTES + vb)

    def part(start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        return rows[:, start:stop].reshape(-1).clone().view(dtype)

    indices = part(0, a, INDEX_DTYPE)
    values = part(a, b, value_dtype)
    dense_values = part(b, b + dense * vb, value_dtype).reshape(world_size, dense)
    return indices, values, dense_values
