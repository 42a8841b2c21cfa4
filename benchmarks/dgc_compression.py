"""DGC on the app's victims: bytes sent per step, compression ratio, and top-k selection time vs backward.

The real DGC communication hook runs inside DDP on a one-rank process group (gloo on CPU, NCCL on GPU),
on the KWS CNN (``configs/kws/demo.yaml``) and the paper-size DeepSpeech (``configs/asr/full.yaml``: 2048
hidden units, 30 M parameters), with real gradients of random audio. Every rank sends a message of the
same size (same k everywhere), so the bytes and ratios measured on one rank hold for any number of ranks.
The dense fallback and the dense first steps are off: this measures the compressed steps, at 0.1% density.

Times are the hook's own measurements (CUDA events on a GPU), summed over buckets, median over steps:
"selection" is the top-k selection, "DGC work" all local DGC work (momentum correction, selection,
packing, decoding). Both are compared with the backward time of the plain model (no DDP). Results also go
to ``runs/dgc_bench/compression-<device>.json`` for ``benchmarks/dgc_comm_model.py``.

    flock /tmp/cpu.lock python benchmarks/dgc_compression.py          # CPU (about 13 minutes on 2 cores)
    python benchmarks/dgc_compression.py --bytes-only                  # bytes and DGC's work only (about 1 minute)
    python benchmarks/dgc_compression.py --device cuda                 # GPU (H100 class)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP

from lit_app.base import architecture_settings
from lit_app.benchmarking import synchronize
from lit_app.models.asr import DeepSpeechModule
from lit_app.models.kws import KWSModule
from strategies.dgc import CompressorSettings, DGCCompressor, DGCHookState, dgc_hook
from strategies.dgc.wire import VALUE_DTYPES

REPO = Path(__file__).resolve().parents[1]

# (values, top-k, indices): the paper's wire format first, then the compact codes of issue #26
VARIANTS = [("fp32", "tensor", "int32"), ("bf16", "tensor", "int32"), ("bf16", "bucket", "int32"),
            ("bf16", "tensor", "block16"), ("fp8", "tensor", "block16")]


def model_settings(config: str) -> dict:
    return architecture_settings(yaml.safe_load((REPO / config).read_text())["model"]["init_args"])


def kws_workload(batch: int, device: torch.device) -> tuple[torch.nn.Module, Callable]:
    model = KWSModule(**model_settings("configs/kws/demo.yaml")).to(device)
    g = torch.Generator().manual_seed(0)
    audio = (0.1 * torch.randn(batch, 16000, generator=g)).to(device)
    target = torch.randint(0, len(model.labels), (batch,), generator=g).to(device)
    return model, lambda net: torch.nn.functional.cross_entropy(net(audio), target)


def deepspeech_workload(batch: int, device: torch.device, seconds: float = 3.0) -> tuple[torch.nn.Module, Callable]:
    model = DeepSpeechModule(**model_settings("configs/asr/full.yaml")).to(device)
    g = torch.Generator().manual_seed(0)
    samples = int(seconds * model.sample_rate)
    audio = (0.1 * torch.randn(batch, samples, generator=g)).to(device)
    lengths = torch.full((batch,), samples, device=device)
    chars = int(12 * seconds)
    targets = torch.randint(3, len(model.alphabet), (batch, chars), generator=g).to(device)
    target_lengths = torch.full((batch,), chars, device=device)

    def loss(net: torch.nn.Module) -> torch.Tensor:
        log_probs, frames = net(audio, lengths)
        return model.ctc_loss(log_probs, frames, targets, target_lengths)

    return model, loss


def timed_steps(net: torch.nn.Module, loss_fn: Callable, steps: int, warmup: int, device: torch.device,
                after_backward: Callable | None = None) -> dict[str, float]:
    """Median forward, backward and SGD-step times (ms) of ``net`` (plain module or DDP)."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-6)
    times: dict[str, list[float]] = {"forward": [], "backward": [], "step": []}
    for i in range(warmup + steps):
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        t0 = time.perf_counter()
        loss = loss_fn(net)
        synchronize(device)
        t1 = time.perf_counter()
        loss.backward()
        synchronize(device)
        t2 = time.perf_counter()
        optimizer.step()
        synchronize(device)
        t3 = time.perf_counter()
        if after_backward is not None:
            after_backward(i >= warmup)
        if i >= warmup:
            for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key].append(value * 1000)
    return {key: statistics.median(values) for key, values in times.items()}


def measure(name: str, model: torch.nn.Module, loss_fn: Callable, args: argparse.Namespace,
            device: torch.device) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    numel = sum(p.numel() for p in params)
    plain = None if args.bytes_only else timed_steps(model, loss_fn, args.steps, args.warmup, device)
    result = {"model": name, "parameters": numel, "tensors": len(params),
              "weight_tensors": sum(p.dim() > 1 for p in params), "shapes": [list(p.shape) for p in params],
              "plain_ms": plain,
              "variants": []}
    for value_dtype, selection, index_coding in VARIANTS:
        replica = copy.deepcopy(model)
        settings = CompressorSettings(value_dtype=VALUE_DTYPES[value_dtype], selection=selection, dense_fallback=False,
                                      index_coding=index_coding)
        compressor = DGCCompressor(settings, {p: n for n, p in replica.named_parameters()})
        compressor.configure_optimizer(0.9)
        state = DGCHookState(compressor, None, args.density, dense_steps=0)
        ddp = DDP(replica)
        ddp.register_comm_hook(state, dgc_hook)
        records: list[dict] = []

        def record(timed: bool, state: DGCHookState = state, records: list = records) -> None:
            s = state.last_step
            if timed:
                records.append({"bytes": s.bytes_sent, "dense": s.dense_bytes, "selection_ms": s.selection_ms,
                                "work_ms": s.compression_ms, "elements_sent": s.elements_sent, "buckets": s.buckets})

        # one extra warm-up step: DDP rebuilds its buckets after the first one
        times = timed_steps(ddp, loss_fn, args.steps, args.warmup + 1, device, after_backward=record)
        last = records[-1]
        selection_ms = statistics.median(r["selection_ms"] for r in records)
        # DDP's final buckets (shapes, in bucket order): the communication model builds the reduce-scatter
        # messages of N ranks from them, as the hook would.
        buckets = [[list(p.shape) for p in layout.params] for layout in compressor._layouts.values()]
        result["variants"].append({
            "value_dtype": value_dtype,
            "mode": selection,
            "index_coding": index_coding,
            "bucket_shapes": buckets,
            "bytes_sent": last["bytes"],
            "dense_bytes": last["dense"],
            "ratio": last["dense"] / last["bytes"],
            "elements_sent": last["elements_sent"],
            "buckets": last["buckets"],
            "selection_ms": selection_ms,
            "work_ms": statistics.median(r["work_ms"] for r in records),
            "ddp_dgc_backward_ms": None if args.bytes_only else times["backward"],
        })
        del ddp, replica
    return result


def backward_share(ms: float, plain: dict | None) -> str:
    """``ms`` as a share of the plain backward, when it was timed."""
    return f"{100 * ms / plain['backward']:>7.2f}%" if plain is not None else f"{'-':>8}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--kws-batch", type=int, default=128)
    parser.add_argument("--deepspeech-batch", type=int, default=16, help="3 s clips")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3 on CPU, 20 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 1 on CPU, 5 on GPU)")
    parser.add_argument("--models", nargs="+", default=["kws", "deepspeech"], choices=["kws", "deepspeech"])
    parser.add_argument("--out", default=None, help="JSON output (default runs/dgc_bench/compression-<device>.json)")
    parser.add_argument("--bytes-only", action="store_true",
                        help="bytes and DGC's own work only, on the gradients of one short clip (no timing of the "
                             "model; about a minute on a CPU; the bytes do not depend on the gradients' values)")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu and device.index is None:  # set_device needs an index
        device = torch.device("cuda", torch.cuda.current_device())
    args.steps = args.steps or (20 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if gpu:
        torch.cuda.set_device(device)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl" if gpu else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)

    where = torch.cuda.get_device_name(device) if gpu else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    header = {"date": str(datetime.date.today()), "device": where, "torch": torch.__version__, "density": args.density,
              "steps": args.steps, "warmup": args.warmup, "bytes_only": args.bytes_only}
    print(f"DGC compression - {header['date']} - {device.type} ({where}) - torch {torch.__version__} - density {args.density}")
    results = []
    for name in args.models:
        # --bytes-only: the smallest batch that gives every parameter a gradient (the bytes do not depend on it)
        if name == "kws":
            batch = 2 if args.bytes_only else args.kws_batch
            model, loss_fn = kws_workload(batch, device)
            label = f"KWS cnn-trad-fpool3, batch {batch} x 1 s"
        else:
            batch, seconds = (1, 0.5) if args.bytes_only else (args.deepspeech_batch, 3.0)
            model, loss_fn = deepspeech_workload(batch, device, seconds)
            label = f"DeepSpeech 2048 (full.yaml), batch {batch} x {seconds:g} s"
        result = measure(name, model, loss_fn, args, device)
        result["workload"] = label
        results.append(result)
        plain = result["plain_ms"]
        print(f"\n{label}: {result['parameters']:,} parameters in {result['tensors']} tensors "
              f"({result['weight_tensors']} compressed), dense fp32 gradient {result['parameters'] * 4 / 1e6:.2f} MB")
        if plain is not None:
            print(f"  plain step: forward {plain['forward']:.1f} ms, backward {plain['backward']:.1f} ms, "
                  f"SGD {plain['step']:.1f} ms")
        print(f"  {'values':<6} {'top-k':<7} {'indices':<8} {'sent/step':>11} {'ratio':>8} {'selection':>10} "
              f"{'sel/bwd':>8} {'DGC work':>10} {'work/bwd':>8}")
        for v in result["variants"]:
            print(f"  {v['value_dtype']:<6} {v['mode']:<7} {v['index_coding']:<8} {v['bytes_sent'] / 1e3:>8.1f} kB "
                  f"{v['ratio']:>7.1f}x {v['selection_ms']:>7.2f} ms {backward_share(v['selection_ms'], plain)} "
                  f"{v['work_ms']:>7.2f} ms {backward_share(v['work_ms'], plain)}")
    out = Path(args.out) if args.out else REPO / "runs" / "dgc_bench" / f"compression-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"header": header, "results": results}, indent=2) + "\n")
    print(f"\nwritten to {out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
