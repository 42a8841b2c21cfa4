"""Communication model: bytes per worker, time per step and speed-up for 2 to 256 workers at 1, 10 and 100 Gbps.

Inputs come from ``benchmarks/dgc_compression.py`` (run it first; ``--bytes-only`` is enough for the byte and
time-of-communication tables): the model's tensor shapes, DDP's buckets, the bytes DGC's hook sent on one rank,
DGC's own local work per step and, unless ``--bytes-only``, the compute time of one training step. Per worker and
step, with S the dense fp32 gradient bytes, B the link bandwidth in bytes/s, alpha the latency of one message and
b the number of DDP buckets (one exchange each):

    dense fp32 (ring all-reduce):   2 (N-1)/N * S / B            + 2 (N-1) alpha b
    bf16 compress hook:             2 (N-1)/N * (S/2) / B        + 2 (N-1) alpha b
    PowerSGD rank r (all-reduces):  2 (N-1)/N * S_r / B          + 4 (N-1) alpha b
        S_r = 4 * (sum over matrices n x m worth compressing of (n + m) r  +  all other elements)
    DGC, the paper (ring all-gather): (N-1) * P / B               + (N-1) alpha b
        P = bytes of one worker's message (k indices + k values + the 1-D tensors)
    DGC reduce_scatter:             (N-1) * (R1 + R2) / B         + 2 (N-1) alpha b
        R1 = one row of the sparse all-to-all (each range's share of k, of the 1-D tensors), R2 = one row of the
        all-gather of the global selection (the same size): about 2 (N-1)/N * P, whatever N
    every DGC bucket: at most a dense all-reduce in bf16 (fp32 for fp32 values), as the hook's fallback does
    t_step = t_compute + t_local + t_comm       (t_local: DGC's measured work; 0 for the others)
    speed-up over one worker = N * t_compute / t_step

The DGC messages are computed per bucket from DDP's buckets with the same formulas the hook's messages are
built with (``strategies/dgc/wire.py``, ``scatter.py``; tests check the hook's bytes against them), and the
paper's variant is checked against the bytes the hook measured. Ring and pairwise algorithms: bandwidth-optimal,
with a latency that grows linearly with N (a tree would pay log2 N messages and more bytes). Communication is not
overlapped with the backward pass, for every method alike (the model is pessimistic). PowerSGD's own compute is
left out. The paper's scalability study used a model of the same kind (Lin et al. 2018, section 5).

    python benchmarks/dgc_comm_model.py --input runs/dgc_bench/compression-cpu-bytes.json
    python benchmarks/dgc_comm_model.py --input runs/dgc_bench/compression-cuda.json          # measured compute
    python benchmarks/dgc_comm_model.py --compute-ms deepspeech=40.6   # what-if: another compute time
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from strategies.dgc import wire
from strategies.dgc.codec import VALUE_DTYPES, summable_dtype
from strategies.dgc.scatter import ScatterPlan
from strategies.dgc.selection import tensor_k

REPO = Path(__file__).resolve().parents[1]

WORKERS = [2, 4, 8, 16, 32, 64, 128, 256]
GBPS = [1, 10, 100]
MIN_COMPRESS_NUMEL = 1024  # DGCStrategy's default
# DGC variants: (column name, aggregation, values, indices)
DGC_VARIANTS = [
    ("DGC-paper", "allgather", "bf16", "int32"),  # today's GPU preset
    ("DGC-ag8", "allgather", "fp8", "block16"),
    ("RS-bf16", "reduce_scatter", "bf16", "int32"),
    ("RS-fp8", "reduce_scatter", "fp8", "block16"),
]


def powersgd_bytes(shapes: list[list[int]], rank: int) -> int:
    """Bytes PowerSGD all-reduces per step (P and Q of compressed matrices, everything else uncompressed)."""
    total = 0
    for shape in shapes:
        numel = 1
        for d in shape:
            numel *= d
        if len(shape) > 1:
            n, m = shape[0], numel // shape[0]
            if (n + m) * rank * 2 < n * m:  # torch's rule: compress only when it saves at least 2x
                total += (n + m) * rank
                continue
        total += numel
    return 4 * total


def bucket_members(shapes: list[list[int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(start, numel) of the compressed and of the dense tensors of one bucket, and its element count."""
    compressed, dense, start = [], [], 0
    for shape in shapes:
        numel = math.prod(shape)
        (compressed if len(shape) > 1 and numel >= MIN_COMPRESS_NUMEL else dense).append((start, numel))
        start += numel
    return compressed, dense, start


def dgc_wire_bytes(buckets: list[list[list[int]]], n: int, density: float, aggregation: str, values: str,
                   coding: str) -> float:
    """Bytes one worker sends per step under a DGC variant, bucket by bucket, with the hook's dense fallback."""
    dtype = VALUE_DTYPES[values]
    total = 0.0
    for shapes in buckets:
        compressed, dense, numel = bucket_members(shapes)
        if aggregation == "allgather":
            ks = [tensor_k(m, density) for _, m in compressed]
            payload = wire.row_bytes(sum(ks), numel, sum(m for _, m in dense), dtype, coding, len(ks), len(dense))
            sparse = wire.allgather_wire_bytes(payload, n)
        else:
            plan = ScatterPlan([s for s, _ in compressed], [m for _, m in compressed], dense, n, density, dtype,
                               coding, torch.device("cpu"))
            sparse = plan.wire_bytes
        total += min(sparse, wire.allreduce_wire_bytes(numel * summable_dtype(dtype).itemsize, n))
    return total


def method_bytes(result: dict, n: int, density: float, powersgd_rank: int) -> dict[str, float]:
    """Bytes one worker sends per step, every method."""
    dense = result["parameters"] * 4
    ring = 2 * (n - 1) / n
    buckets = result["variants"][0]["bucket_shapes"]
    out = {"fp32": ring * dense, "bf16": ring * dense / 2,
           f"PSGD-r{powersgd_rank}": ring * powersgd_bytes(result["shapes"], powersgd_rank)}
    for name, aggregation, values, coding in DGC_VARIANTS:
        out[name] = dgc_wire_bytes(buckets, n, density, aggregation, values, coding)
    return out


def latency_messages(n: int, names: list[str]) -> dict[str, float]:
    """Messages in sequence per bucket and step (ring and pairwise algorithms)."""
    per = {"fp32": 2, "bf16": 2, "DGC-paper": 1, "DGC-ag8": 1, "RS-bf16": 2, "RS-fp8": 2}
    return {name: (4 if name.startswith("PSGD") else per[name]) * (n - 1) for name in names}


def table(title: str, cell, fmt: str = "9.1f") -> None:
    names = list(cell(2, GBPS[0]))
    width = 10 * len(names)
    print(title)
    print("     " + " | ".join(f"{f'{g} Gbps':^{width}}" for g in GBPS))
    print(f"{'N':>4} " + " | ".join("".join(f"{name:>10}" for name in names) for _ in GBPS))
    for n in WORKERS:
        print(f"{n:>4} " + " | ".join("".join(f"{v:>10{fmt[1:]}}" for v in cell(n, g).values()) for g in GBPS))


def report(result: dict, args: argparse.Namespace, density: float, compute_override: dict, work_override: dict) -> None:
    model = result["model"]
    measured = {(v["value_dtype"], v["mode"], v.get("index_coding", "int32")): v for v in result["variants"]}
    paper = measured[("bf16", "tensor", "int32")]
    buckets = paper["bucket_shapes"]
    modelled = dgc_wire_bytes(buckets, 2, density, "allgather", "bf16", "int32")
    # The formula must reproduce what the hook sent (one rank's message = the 2-worker all-gather's traffic).
    assert modelled == paper["bytes_sent"], (modelled, paper["bytes_sent"])
    print(f"\n== {result['workload']}: dense fp32 {result['parameters'] * 4 / 1e6:.2f} MB/step in {len(buckets)} "
          f"buckets; the paper's DGC message (bf16 values, int32 indices) {paper['bytes_sent'] / 1e3:.1f} kB, measured "
          f"= modelled")
    dense = result["parameters"] * 4
    names = list(method_bytes(result, 2, density, args.powersgd_rank))

    print("bytes each worker sends per step, kB (bandwidth-independent)")
    print(f"{'N':>4} " + "".join(f"{name:>11}" for name in names))
    cache = {n: method_bytes(result, n, density, args.powersgd_rank) for n in WORKERS}
    for n in WORKERS:
        print(f"{n:>4} " + "".join(f"{v / 1e3:>11.1f}" for v in cache[n].values()))
    print("dense fp32 ring all-reduce's bytes over each method's bytes (x)")
    print(f"{'N':>4} " + "".join(f"{name:>11}" for name in names))
    for n in WORKERS:
        ring = 2 * (n - 1) / n * dense
        print(f"{n:>4} " + "".join(f"{ring / v:>11.1f}" for v in cache[n].values()))

    latency = args.latency_us * 1e-6
    n_buckets = len(buckets)

    def comm_ms(n: int, g: float) -> dict[str, float]:
        bandwidth = g * 1e9 / 8
        messages = latency_messages(n, names)
        return {k: 1000 * (v / bandwidth + messages[k] * latency * n_buckets) for k, v in cache[n].items()}

    table(f"communication time per step, ms (bandwidth + {args.latency_us:g} us per message x {n_buckets} buckets)",
          comm_ms)
    plain = result.get("plain_ms")
    if plain is None and model not in compute_override:
        print("(no compute time: measured with --bytes-only; pass --compute-ms MODEL=MS for the speed-up table)")
        return
    compute_ms = compute_override.get(model) or plain["forward"] + plain["backward"] + plain["step"]
    work = {name: work_override.get(model, measured.get(key, paper)["work_ms"]) for name, key in (
        ("DGC-paper", ("bf16", "tensor", "int32")), ("DGC-ag8", ("fp8", "tensor", "block16")),
        ("RS-bf16", ("bf16", "tensor", "int32")), ("RS-fp8", ("fp8", "tensor", "block16")))}

    def speedup(n: int, g: float) -> dict[str, float]:
        return {name: n * compute_ms / (compute_ms + work.get(name, 0.0) + t) for name, t in comm_ms(n, g).items()}

    source = "what-if" if model in compute_override else "measured"
    table(f"speed-up over one worker (ideal N), compute {compute_ms:.1f} ms/step ({source}), DGC local work "
          f"{work['DGC-paper']:.2f}-{work['RS-fp8']:.2f} ms/step (one-rank measurement; RS adds the owner's sum)", speedup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(REPO / "runs/dgc_bench/compression-cpu.json"))
    parser.add_argument("--latency-us", type=float, default=10.0,
                        help="latency alpha of one message (10 us: a fast data-centre network; 0: bandwidth only)")
    parser.add_argument("--powersgd-rank", type=int, default=2)
    parser.add_argument("--compute-ms", nargs="*", default=[], metavar="MODEL=MS",
                        help="replace a model's measured compute time (a what-if, not a measurement)")
    parser.add_argument("--dgc-work-ms", nargs="*", default=[], metavar="MODEL=MS",
                        help="replace a model's measured DGC local work per step (a what-if)")
    parser.add_argument("--models", nargs="*", default=None, help="models to report (default: all in the input)")
    args = parser.parse_args()
    data = json.loads(Path(args.input).read_text())
    compute_override = {k: float(v) for k, v in (item.split("=") for item in args.compute_ms)}
    work_override = {k: float(v) for k, v in (item.split("=") for item in args.dgc_work_ms)}
    header = data["header"]
    print(f"Communication model from {args.input} (measured {header['date']} on {header['device']}, density "
          f"{header['density']}); latency {args.latency_us:g} us per message; communication not overlapped")
    print("columns: dense fp32 all-reduce, bf16 hook, PowerSGD, DGC as in the paper (all-gather, bf16 values, int32 "
          "indices), DGC all-gather with fp8 values and block16 indices, DGC reduce_scatter with bf16/int32 and with "
          "fp8/block16")
    for result in data["results"]:
        if args.models is None or result["model"] in args.models:
            report(result, args, header["density"], compute_override, work_override)


if __name__ == "__main__":
    main()
