"""Optimiser probe for the DeepSpeech demo model in one process: does SGD leave the CTC plateau, and how fast?

DGC needs momentum SGD, while the demo config trains DeepSpeech with AdamW. This loop trains the demo model
(its config's network on its corpus) for a fixed number of steps with either optimiser, clipping the global
gradient norm, and prints the training loss per character every 100 steps and the validation CER at the end.
A 1000-step run takes about 3.5 minutes on 2 cores. Use it to pick an SGD recipe before a 2-rank
``dgc_accuracy.py --victim asr`` run; its numbers are not a substitute for that run.

    python benchmarks/asr_sgd_probe.py                                 # the SGD recipe: lr 0.3, Nesterov, clip 1
    python benchmarks/asr_sgd_probe.py --adamw --lr 0.003 --clip 5      # the demo config's optimiser
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import chain, count, islice
from pathlib import Path

import torch
import yaml
from torchmetrics.text import CharErrorRate

from lit_app.base import architecture_settings, warmup_cosine
from lit_app.data.asr import ASRDataModule
from lit_app.models.asr import DeepSpeechModule
from lit_app.text import greedy_decode

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lr", type=float, default=0.3, help="peak lr (warm-up, then cosine decay)")
    parser.add_argument("--adamw", action="store_true", help="AdamW instead of momentum SGD")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--clip", type=float, default=1.0, help="global gradient norm bound")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr-warmup", type=float, default=0.05, help="share of the steps the lr warms up")
    parser.add_argument("--root", help="corpus; default: the one configs/asr/demo.yaml builds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "configs/asr/demo.yaml").read_text())
    model = DeepSpeechModule(**architecture_settings(config["model"]["init_args"]))
    data = ASRDataModule(root=args.root or config["data"]["init_args"]["root"], corpus="synthetic",
                         batch_size=args.batch_size, seed=args.seed)
    data.setup("fit")
    params = [p for p in model.parameters() if p.requires_grad]
    if args.adamw:
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    else:
        optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                                    weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(int(args.lr_warmup * args.steps), args.steps))
    print(json.dumps(vars(args)), flush=True)

    losses, start = [], time.perf_counter()
    batches = islice(chain.from_iterable(data.train_dataloader() for _ in count()), args.steps)  # epochs as needed
    model.train()
    for step, (waveforms, lengths, targets, target_lengths, _) in enumerate(batches):
        log_probs, frames = model(waveforms, lengths)
        loss = model.ctc_loss(log_probs, frames, targets, target_lengths)  # per target character
        if not torch.isfinite(loss):
            sys.exit(f"step {step}: loss {loss.item()}; this setting diverges")
        optimizer.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, args.clip)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"step {step + 1:>5}  training loss per character {sum(losses[-100:]) / 100:.3f}  "
                  f"gradient norm {norm:.2f}  {time.perf_counter() - start:.0f} s", flush=True)

    model.eval()
    cer = CharErrorRate()
    with torch.no_grad():
        for waveforms, lengths, targets, target_lengths, _ in data.val_dataloader():
            log_probs, frames = model(waveforms, lengths)
            references = [model.alphabet.decode(t[:n]) for t, n in zip(targets, target_lengths.tolist())]
            cer(greedy_decode(log_probs, frames, model.alphabet), references)
    print(json.dumps({**vars(args), "val_cer": float(cer.compute()), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
