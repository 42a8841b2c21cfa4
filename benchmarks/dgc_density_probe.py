"""Loss curve of the KWS victim under DGC in one process: a quick look at density, clipping and masking.

The DGC compressor runs between backward and the SGD step of a plain training loop, as the communication hook
runs it on every rank, with one simulated worker (world size 1; the dense fallback is off, or one worker
would always send dense). Training loss is printed every 50 steps and validation accuracy at the end. Much
cheaper than ``dgc_accuracy.py`` (no process group, no Lightning loop), so it is the place to try a
setting before a 2-rank run; its numbers are not a substitute for that run.

    python benchmarks/dgc_density_probe.py --density 1                 # dense momentum SGD (the reference)
    python benchmarks/dgc_density_probe.py --density 0.001 --clip 5    # DGC with local gradient clipping
    python benchmarks/dgc_density_probe.py --density 0.001 --no-masking --steps 400
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import chain, count, islice
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from lit_app.base import architecture_settings, warmup_cosine
from lit_app.data.kws import KWSDataModule
from lit_app.models.kws import KWSModule
from strategies.dgc import PAPER_WARMUP, DensitySchedule
from strategies.dgc.compressor import CompressorSettings, DGCCompressor

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--density", type=float, default=0.001, help="final density; 1 for dense momentum SGD")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.003, help="peak SGD lr (warm-up, then cosine decay)")
    parser.add_argument("--lr-warmup", type=float, default=0.05, help="share of the steps the lr warms up")
    parser.add_argument("--warmup-steps", type=int, default=50, help="steps per DGC warm-up stage (paper densities)")
    parser.add_argument("--clip", type=float, help="per-tensor gradient norm bound (DGC's local clipping)")
    parser.add_argument("--no-masking", action="store_true", help="keep the momentum of sent entries")
    parser.add_argument("--root", help="corpus; default: the one configs/kws/demo.yaml builds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "configs/kws/demo.yaml").read_text())
    model = KWSModule(**architecture_settings(config["model"]["init_args"]))
    root = args.root or config["data"]["init_args"]["root"]
    data = KWSDataModule(root=root, task="keywords12", batch_size=args.batch_size, seed=args.seed)
    data.setup("fit")

    params = [p for p in model.parameters() if p.requires_grad]
    settings = CompressorSettings(momentum_masking=not args.no_masking, clip_norm=args.clip, dense_fallback=False)
    compressor = DGCCompressor(settings, {p: name for name, p in model.named_parameters()})
    compressor.configure_optimizer(0.9, weight_decay={p: 5e-4 for p in params})
    schedule = DensitySchedule(min(args.density, 1.0), PAPER_WARMUP, "step", args.warmup_steps)
    optimizer = torch.optim.SGD(params, lr=args.lr)  # momentum and weight decay live in the compressor
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(int(args.lr_warmup * args.steps), args.steps))

    losses, start = [], time.perf_counter()
    batches = islice(chain.from_iterable(data.train_dataloader() for _ in count()), args.steps)  # epochs as needed
    print(f"density {args.density}, {args.steps} steps of {args.batch_size}, lr {args.lr}, clip {args.clip}, "
          f"masking {not args.no_masking}, warm-up stages of {args.warmup_steps} steps")
    model.train()
    for step, (audio, target) in enumerate(batches):
        loss = F.cross_entropy(model(data.waveforms(audio, augment=True)), target)
        optimizer.zero_grad()
        loss.backward()
        density = schedule.at(0, step)
        packet = compressor.compress(params, torch.cat([p.grad.reshape(-1) for p in params]), 1, density,
                                     force_dense=args.density >= 1)
        update = compressor.decompress(packet, packet.payload, 1)
        for p, new in zip(params, update.split([p.numel() for p in params])):
            p.grad.copy_(new.view_as(p))
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            print(f"step {step + 1:>5}  density {density:.4f}  training loss {sum(losses[-50:]) / 50:.3f}  "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for audio, target in data.val_dataloader():
            correct += (model(data.waveforms(audio, augment=False)).argmax(1) == target).sum().item()
            total += len(target)
    print(json.dumps({**vars(args), "val_acc": correct / total, "val_items": total}))


if __name__ == "__main__":
    main()
