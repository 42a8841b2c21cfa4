"""Top-k selection cost: DGC's batched exact top-k against a per-tensor loop, at 0.1% density.

The weight tensors of ResNet-50 (54 tensors, 25.5 M elements: many small layers), the paper-size
DeepSpeech (9 tensors, 30 M) and the KWS CNN (3 tensors, 0.26 M) are laid out in one flat buffer, as in a
DDP bucket, and selected three ways, each returning the same k = sum of ceil(0.001 * numel) positions:

- ``loop``: one ``torch.topk`` per tensor (what a straightforward implementation does);
- ``tensor``: exact per-tensor top-k batched by size class (``TopKPlan(..., "tensor", batched=True)``,
  DGC's default on GPUs; on CPUs it selects each tensor in place, which is ``loop``);
- ``bucket``: one exact top-k over all compressed entries (``TopKPlan(..., "bucket")``).

On a GPU each launch costs microseconds whatever its size, which is where batching pays; on a CPU the
work itself dominates. Median of ``--repeats`` runs, synchronised.

    flock /tmp/cpu.lock python benchmarks/dgc_selection.py
    python benchmarks/dgc_selection.py --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform

import torch

from lit_app.benchmarking import median_seconds
from strategies.dgc.selection import TopKPlan, tensor_k


def resnet50_weight_shapes() -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7)]
    inplanes = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [(planes, inplanes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)]
            if block == 0:
                shapes.append((planes * 4, inplanes, 1, 1))  # projection shortcut
            inplanes = planes * 4
    return shapes + [(1000, 2048)]


def deepspeech_weight_shapes(n_hidden: int = 2048, n_input: int = 26 * 11, n_classes: int = 29) -> list[tuple[int, ...]]:
    h = n_hidden
    return [(h, n_input), (h, h), (h, h), (h, h), (h, h), (h, h), (h, h), (h, h), (n_classes, h)]


def kws_weight_shapes() -> list[tuple[int, ...]]:
    return [(64, 1, 20, 8), (64, 64, 10, 4), (12, 7168)]


SETS = {"ResNet-50": resnet50_weight_shapes, "DeepSpeech 2048": deepspeech_weight_shapes, "KWS CNN": kws_weight_shapes}


def median_ms(fn, repeats: int, device: torch.device) -> float:
    return median_seconds(fn, device, repeats) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--repeats", type=int, default=None, help="default 5 on CPU, 50 on GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (50 if device.type == "cuda" else 5)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"DGC top-k selection - {datetime.date.today()} - {device.type} ({where}) - torch {torch.__version__} - "
          f"density {args.density}, median of {repeats}")
    print(f"{'weights':<16} {'tensors':>7} {'elements':>12} {'k':>7} {'loop':>10} {'tensor':>10} {'bucket':>10} {'kernels (tensor)':>17}")
    for name, shapes_fn in SETS.items():
        measure(name, shapes_fn(), args.density, repeats, device)


def measure(name: str, shapes: list[tuple[int, ...]], density: float, repeats: int, device: torch.device) -> None:
    numels = [math.prod(s) for s in shapes]
    starts = [0]
    for n in numels[:-1]:
        starts.append(starts[-1] + n)
    score = torch.rand(sum(numels), generator=torch.Generator().manual_seed(0)).to(device)
    ks = [tensor_k(n, density) for n in numels]

    def loop() -> torch.Tensor:
        return torch.cat([torch.topk(score.narrow(0, s, n), k, sorted=False).indices + s
                          for s, n, k in zip(starts, numels, ks)])

    per_tensor = TopKPlan(starts, numels, density, "tensor", device, batched=True)
    per_bucket = TopKPlan(starts, numels, density, "bucket", device)
    assert per_tensor.k == per_bucket.k == sum(ks)
    assert set(per_tensor.select(score).tolist()) == set(loop().tolist())  # the batched plan is exact
    t_loop = median_ms(loop, repeats, device)
    t_tensor = median_ms(lambda: per_tensor.select(score), repeats, device)
    t_bucket = median_ms(lambda: per_bucket.select(score), repeats, device)
    print(f"{name:<16} {len(numels):>7} {sum(numels):>12,} {sum(ks):>7,} {t_loop:>7.2f} ms {t_tensor:>7.2f} ms "
          f"{t_bucket:>7.2f} ms {len(per_tensor.groups):>11} top-k")


if __name__ == "__main__":
    main()
