"""Communication model: time per step and speed-up for 2 to 256 workers at 1, 10 and 100 Gbps.

Inputs are measured by ``benchmarks/dgc_compression.py`` (run it first, on the device of interest): the
compute time of one training step (forward + backward + SGD step, one device, no communication), the
bytes DGC sends per step, and DGC's own local work per step. Per worker and step, with S the dense fp32
gradient bytes, B the link bandwidth in bytes/s and alpha the latency of one hop:

    dense fp32 (ring all-reduce):  t_comm = 2 (N-1)/N * S / B            + 2 (N-1) alpha * buckets
    bf16 compress hook:            t_comm = 2 (N-1)/N * (S/2) / B        + 2 (N-1) alpha * buckets
    PowerSGD rank r (all-reduce):  t_comm = 2 (N-1)/N * S_r / B          + 4 (N-1) alpha * buckets
        S_r = 4 * (sum over matrices n x m worth compressing of (n + m) r  +  all other elements)
    DGC (ring all-gather):         t_comm = min((N-1) * P / B + (N-1) alpha * buckets,  dense in value dtype)
        P = bytes one worker sends per step (k int32 indices + k values + the 1-D tensors), measured
    t_step = t_compute + t_local + t_comm          (t_local: DGC's measured work; 0 for the others)
    speed-up over one worker = N * t_compute / t_step

Communication is not overlapped with the backward pass (DDP overlaps part of it), so the model is
pessimistic for every method alike. PowerSGD's own compute (two small matrix products per layer) is not
measured here and is left out. The DGC minimum mirrors the strategy's dense fallback, which switches a
bucket to an all-reduce when the all-gather would move more bytes (about N > 2 * 4 / (density * bytes per
entry)). The paper's scalability study used a model of the same kind (Lin et al. 2018, section 5).

    python benchmarks/dgc_comm_model.py                                   # CPU measurements
    python benchmarks/dgc_comm_model.py --input runs/dgc_bench/compression-cuda.json
    python benchmarks/dgc_comm_model.py --compute-ms deepspeech=28        # what-if: another compute time
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKERS = [2, 4, 8, 16, 32, 64, 128, 256]
GBPS = [1, 10, 100]


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


def comm_seconds(result: dict, variant: dict, n: int, gbps: float, latency_s: float, powersgd_rank: int) -> dict[str, float]:
    """Communication time per step of each method, from the measured bytes."""
    bandwidth = gbps * 1e9 / 8
    dense = result["parameters"] * 4
    buckets = variant["buckets"]
    ring = 2 * (n - 1) / n
    value_bytes = 2 if variant["value_dtype"] in ("bf16", "fp16") else 4
    sparse = (n - 1) * variant["bytes_sent"] / bandwidth + (n - 1) * latency_s * buckets
    fallback = ring * result["parameters"] * value_bytes / bandwidth + 2 * (n - 1) * latency_s * buckets
    return {
        "fp32": ring * dense / bandwidth + 2 * (n - 1) * latency_s * buckets,
        "bf16": ring * dense / 2 / bandwidth + 2 * (n - 1) * latency_s * buckets,
        f"PSGD-r{powersgd_rank}": ring * powersgd_bytes(result["shapes"], powersgd_rank) / bandwidth
        + 4 * (n - 1) * latency_s * buckets,
        "DGC": min(sparse, fallback),
    }


def table(title: str, cell) -> None:
    names = list(cell(2, GBPS[0]))
    width = 9 * len(names)
    print(title)
    print("     " + " | ".join(f"{f'{g} Gbps':^{width}}" for g in GBPS))
    print(f"{'N':>4} " + " | ".join("".join(f"{name:>9}" for name in names) for _ in GBPS))
    for n in WORKERS:
        print(f"{n:>4} " + " | ".join("".join(f"{v:>9.1f}" for v in cell(n, g).values()) for g in GBPS))


def report(result: dict, args: argparse.Namespace, compute_override: dict, work_override: dict) -> None:
    variant = next(v for v in result["variants"] if v["value_dtype"] == args.value_dtype and v["mode"] == "tensor")
    plain = result["plain_ms"]
    model = result["model"]
    compute_ms = compute_override.get(model, plain["forward"] + plain["backward"] + plain["step"])
    work_ms = work_override.get(model, variant["work_ms"])
    latency = args.latency_us * 1e-6
    print(f"\n== {result['workload']}: dense fp32 {result['parameters'] * 4 / 1e6:.2f} MB/step, DGC ({args.value_dtype}) "
          f"{variant['bytes_sent'] / 1e3:.1f} kB/step ({variant['ratio']:.0f}x), PowerSGD r{args.powersgd_rank} "
          f"{powersgd_bytes(result['shapes'], args.powersgd_rank) / 1e3:.1f} kB/step")

    def comm_ms(n: int, g: float) -> dict[str, float]:
        return {k: 1000 * v for k, v in comm_seconds(result, variant, n, g, latency, args.powersgd_rank).items()}

    def speedup(n: int, g: float) -> dict[str, float]:
        return {
            name: n * compute_ms / (compute_ms + (work_ms if name == "DGC" else 0.0) + t)
            for name, t in comm_ms(n, g).items()
        }

    table("communication time per step, ms (from measured bytes; compare with your compute time)", comm_ms)
    compute_source = "what-if" if model in compute_override else "measured"
    work_source = "what-if" if model in work_override else "measured"
    table(f"speed-up over one worker (ideal N), compute {compute_ms:.1f} ms/step ({compute_source}), "
          f"DGC local work {work_ms:.2f} ms/step ({work_source})", speedup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default=str(REPO / "runs/dgc_bench/compression-cpu.json"))
    parser.add_argument("--value-dtype", default="bf16", choices=["fp32", "bf16"], help="DGC variant to project")
    parser.add_argument("--latency-us", type=float, default=0.0, help="per-hop latency alpha (0: bandwidth only)")
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
          f"{header['density']}); latency {args.latency_us} us per hop; communication not overlapped")
    for result in data["results"]:
        if args.models is None or result["model"] in args.models:
            report(result, args, compute_override, work_override)


if __name__ == "__main__":
    main()
