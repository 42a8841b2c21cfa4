"""How sent entries become bytes: index codes and value codes, each of a size known before the data.

Every rank's message must have the same length, so a single fixed-size collective moves it. Both codes here
keep that property; a variable-length code (Elias-gamma, Golomb-Rice) would save a few more bits per index
but needs a size exchange before every collective.

Indices (``index_coding``):

- ``int32``: 4 bytes per index, any order.
- ``block16``: the index space is cut into blocks of 65,536 positions; each index travels as its 16-bit
  offset inside its block, sorted, and each block's number of entries as one count (16 bits while a
  message holds at most 65,535 entries, else 32). At density 0.001 a block holds about 65 entries, so the
  counts add half a bit per entry: 2.03 bytes per index instead of 4, with no escape and no size exchange.

Values (``value_dtype``):

- ``fp32``, ``fp16``, ``bf16``: the values cast (fp16 saturates at its largest finite value);
- ``fp8``: float8 e4m3 after dividing by a scale per tensor and message (the largest magnitude over 448,
  sent as fp32 in front of the values), 1 byte per value. Its rounding error, like that of the 16-bit
  types, is what the compressor keeps in the residual. Scales per tensor, not per message, keep every
  value's code independent of which tensors DDP puts in its bucket (buckets change after the first step).

Functions work on rows (``[R, n]``): one row per message, so decoding all ranks' messages is one call.
Decoders copy each part before reinterpreting its bytes: a part need not start at an address aligned for
its dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

IndexCoding = Literal["int32", "block16"]
INDEX_CODINGS: tuple[str, ...] = ("int32", "block16")
BLOCK_BITS = 16
BLOCK = 1 << BLOCK_BITS

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
VALUE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp8": FP8}


def _reinterpret(part: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``part``'s bytes as ``dtype``, from a fresh contiguous copy (slices of a row are rarely aligned)."""
    return part.clone(memory_format=torch.contiguous_format).view(dtype)


def _count_dtype(k: int) -> torch.dtype:
    return torch.uint16 if k < (1 << 16) else torch.int32


def index_bytes(k: int, space: int, coding: IndexCoding) -> int:
    """Bytes of ``k`` indices into ``[0, space)`` under ``coding``."""
    if coding == "int32":
        return 4 * k
    if coding == "block16":
        blocks = max(1, math.ceil(space / BLOCK))
        return 2 * k + blocks * _count_dtype(k).itemsize
    raise ValueError(f"index_coding must be one of {INDEX_CODINGS}, got {coding!r}")


def value_bytes(n: int, dtype: torch.dtype, segments: int = 1) -> int:
    """Bytes of ``n`` values in the wire dtype ``dtype`` (with fp8's scale for each of ``segments`` segments)."""
    if n == 0:
        return 0
    return n * dtype.itemsize + (4 * segments if dtype == FP8 else 0)


def summable_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a dense all-reduce sums in: fp8 has per-rank scales, so a dense fallback uses bf16."""
    return torch.bfloat16 if dtype == FP8 else dtype


def encode_indices(index: torch.Tensor, space: int, coding: IndexCoding) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[R, k]`` indices as ``[R, index_bytes]`` uint8, and the order the values must follow (``None``: as given)."""
    rows, k = index.shape
    if coding == "int32":
        return index.to(torch.int32).view(torch.uint8).reshape(rows, -1), None
    if coding != "block16":
        raise ValueError(f"index_coding must be one of {INDEX_CODINGS}, got {coding!r}")
    index, order = torch.sort(index, dim=1)
    blocks = max(1, math.ceil(space / BLOCK))
    block = index >> BLOCK_BITS
    flat = (block + blocks * torch.arange(rows, device=index.device).unsqueeze(1)).reshape(-1)
    counts = torch.bincount(flat, minlength=rows * blocks).view(rows, blocks)
    offsets = (index & (BLOCK - 1)).to(torch.uint16)
    encoded = torch.cat(
        [counts.to(_count_dtype(k)).view(torch.uint8).reshape(rows, -1), offsets.view(torch.uint8).reshape(rows, -1)], 1
    )
    return encoded, order


def decode_indices(encoded: torch.Tensor, k: int, space: int, coding: IndexCoding) -> torch.Tensor:
    """``[R, k]`` int64 indices from ``[R, index_bytes]`` uint8 (sorted within a row for ``block16``)."""
    rows = encoded.shape[0]
    if coding == "int32":
        return _reinterpret(encoded, torch.int32).to(torch.int64)
    blocks = max(1, math.ceil(space / BLOCK))
    count_dtype = _count_dtype(k)
    split = blocks * count_dtype.itemsize
    counts = _reinterpret(encoded[:, :split], count_dtype).to(torch.int64)
    offsets = _reinterpret(encoded[:, split:], torch.uint16).to(torch.int64)
    block_of = torch.repeat_interleave(torch.arange(blocks, device=encoded.device).repeat(rows), counts.reshape(-1),
                                       output_size=rows * k)  # known: no device sync to count it
    return (block_of.view(rows, k) << BLOCK_BITS) | offsets


def _segment_ids(lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(list(lengths), device=device),
                                   output_size=sum(lengths))


def encode_values(
    values: torch.Tensor, dtype: torch.dtype, segments: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[R, n]`` values as ``[R, value_bytes]`` uint8, and what the receiver decodes (in ``values``' dtype).

    ``segments``: lengths of consecutive column groups (one per tensor) that get their own fp8 scale, so a
    value's code depends on its tensor alone, never on which tensors share its bucket; ``None``: one group.
    """
    rows, n = values.shape
    if dtype == FP8:
        if n == 0:
            return values.new_empty((rows, 0), dtype=torch.uint8), values.clone()
        lengths = [n] if segments is None else list(segments)
        ids = _segment_ids(lengths, values.device)
        magnitude = values.abs().float()
        amax = magnitude.new_zeros(rows, len(lengths)).scatter_reduce(1, ids.expand(rows, -1), magnitude, "amax")
        scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
        per_value = scale[:, ids]
        # The clamp: a quotient a rounding above 448 would become NaN in e4m3fn, which has no infinity.
        coded = (values.float() / per_value).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
        decoded = (coded.float() * per_value).to(values.dtype)
        encoded = torch.cat([scale.view(torch.uint8), coded.view(torch.uint8)], 1)
        return encoded, decoded
    if dtype == torch.float16:
        limit = torch.finfo(torch.float16).max
        values = values.clamp(-limit, limit)  # saturate instead of overflowing to inf, which would poison residuals
    coded = values.to(dtype)
    return coded.view(torch.uint8).reshape(rows, -1), coded.to(values.dtype)


def decode_values(encoded: torch.Tensor, n: int, dtype: torch.dtype, segments: Sequence[int] | None = None) -> torch.Tensor:
    """``[R, n]`` float32 values from ``[R, value_bytes]`` uint8 (``segments`` as given to :func:`encode_values`)."""
    rows = encoded.shape[0]
    if n == 0:
        return torch.zeros(rows, 0, device=encoded.device)
    if dtype == FP8:
        lengths = [n] if segments is None else list(segments)
        split = 4 * len(lengths)
        scale = _reinterpret(encoded[:, :split], torch.float32)
        return _reinterpret(encoded[:, split:], FP8).float() * scale[:, _segment_ids(lengths, encoded.device)]
    return _reinterpret(encoded, dtype).float()
