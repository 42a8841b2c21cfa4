"""Accuracy side by side on 2 CPU gloo ranks: dense DDP, bf16 compress hook, PowerSGD and DGC.

Same victim (the model settings of its demo config), same synthetic corpus, same seed, same SGD schedule and the
same number of steps for every method; only the gradient exchange differs. Hooks are attached on CPU too
(``CommHookDDPStrategy``, ``DGCStrategy``); Lightning's stock DDP would drop them there. After training, the
victim's own ``test`` stage runs in this process on the test split (voices, and for DeepSpeech sentences, that
training never saw): accuracy for the keyword spotter, CER and WER for DeepSpeech. DGC uses the paper's warm-up
densities, staged every few dozen steps (the paper stages them per epoch, which would cover these short runs),
then 0.1%. Gradient clipping: the Trainer's global norm for the dense methods, DGC's local per-tensor clipping
at ``clip / sqrt(N)``, as the paper prescribes; the KWS network needs it (without it, its loss jumps above
chance in the first sparse steps; ``dgc_density_probe.py`` shows the curves).

    flock /tmp/cpu.lock python benchmarks/dgc_accuracy.py                  # KWS, about 25 minutes on 2 cores
    flock /tmp/cpu.lock python benchmarks/dgc_accuracy.py --methods dgc --lr 0.03 \
        --value-dtype fp8 --index-coding block16 --seed 0     # the compact all-gather at DGC's lr (dense: 0.01)
    flock /tmp/cpu.lock python benchmarks/dgc_accuracy.py --methods dgc --lr 0.03 \
        --aggregation reduce_scatter --value-dtype fp8 --index-coding block16 --seed 0    # the compact global top-k
    flock /tmp/cpu.lock python benchmarks/dgc_accuracy.py --victim asr --methods ddp dgc   # DeepSpeech demo model
    python benchmarks/dgc_accuracy.py --methods ddp dgc --epochs 1         # a quicker look

Each victim has its own SGD recipe (``VICTIMS``): the keyword spotter lr 0.01 with clipping at 5 (TensorFlow's conv
model, the default victim since 2026-12-05, learns nothing at 0.03: 9.1% after 3 epochs; the earlier victim with a
second pool and batch norm took 0.03). DGC's sparse steps want a larger lr on it: give ``--lr 0.03`` to its runs
(docs/dgc.md). DeepSpeech: Nesterov momentum, lr 0.3, clipping at 1 (``asr_sgd_probe.py`` found it: plain
momentum at lr 0.05-0.2 stays on the CTC plateau for hundreds of steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from dgc_comm_model import powersgd_bytes
from pytorch_lightning.callbacks import Callback

from callbacks import DGCMonitor
from lit_app.base import architecture_settings
from lit_app.data.asr import ASRDataModule
from lit_app.data.kws import KWSDataModule
from lit_app.models.asr import DeepSpeechModule
from lit_app.models.kws import KWSModule
from strategies.dgc import PAPER_WARMUP, CommHookDDPStrategy, DGCStrategy

REPO = Path(__file__).resolve().parents[1]

METHODS = ["ddp", "bf16", "powersgd", "dgc"]


@dataclass(frozen=True)
class Victim:
    """What differs between the two victims beyond their demo config: classes, SGD defaults, test metrics.

    The config gives the model settings, the corpus and whether the data module shards batches by rank itself
    (``trainer.use_distributed_sampler: false``); the SGD recipe (lr, Nesterov, clipping) is the victim's own,
    as the demo configs train with AdamW.
    """

    config: str
    model: type[pl.LightningModule]
    data: Callable[[str, int, int], pl.LightningDataModule]
    metrics: tuple[str, ...]
    lr: float
    batch_size: int
    clip: float
    nesterov: bool = False


VICTIMS = {
    "kws": Victim("configs/kws/demo.yaml", KWSModule,
                  lambda root, batch, seed: KWSDataModule(root=root, task="keywords12", batch_size=batch, seed=seed),
                  ("test/acc",), lr=0.01, batch_size=16, clip=5.0),
    "asr": Victim("configs/asr/demo.yaml", DeepSpeechModule,
                  lambda root, batch, seed: ASRDataModule(root=root, corpus="synthetic", batch_size=batch, seed=seed),
                  ("test/cer", "test/wer"), lr=0.3, batch_size=16, clip=1.0, nesterov=True),
}


class OneThreadPerRank(Callback):
    """Two ranks on two cores: one intra-op thread each, or they fight over the cores."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // trainer.world_size))


class CollectStats(Callback):
    """Sums the bytes DGC sent over training (rank 0) and hands the totals back through callback_metrics."""

    def __init__(self) -> None:
        self.sent = self.dense = self.steps = 0
        self.wire = self.dense_wire = 0.0
        self.last_iteration = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        state = getattr(trainer.strategy, "dgc_state", None)
        stats = state.last_step if state is not None else None
        if stats is None or stats.iteration == self.last_iteration:
            return
        self.last_iteration = stats.iteration
        self.sent += stats.bytes_sent
        self.dense += stats.dense_bytes
        self.wire += stats.wire_bytes
        self.dense_wire += stats.dense_wire_bytes
        self.steps += 1

    def on_train_end(self, trainer, pl_module) -> None:
        # The spawn launcher returns callback_metrics to the main process, but not the loop's step count.
        trainer.callback_metrics["bench/steps"] = torch.tensor(float(trainer.global_step))
        if self.steps:
            trainer.callback_metrics["bench/bytes_per_step"] = torch.tensor(self.sent / self.steps, dtype=torch.float64)
            trainer.callback_metrics["bench/ratio_overall"] = torch.tensor(self.dense / self.sent, dtype=torch.float64)
            trainer.callback_metrics["bench/wire_bytes_per_step"] = torch.tensor(self.wire / self.steps, dtype=torch.float64)


def strategy(method: str, args: argparse.Namespace) -> pl.strategies.Strategy:
    common = dict(start_method="spawn", process_group_backend="gloo", timeout=timedelta(minutes=5))
    if method == "dgc":
        return DGCStrategy(
            density=args.density,
            warmup_densities=PAPER_WARMUP,
            warmup_interval="step",
            warmup_every=args.dgc_warmup_steps,
            clip_norm=args.clip,
            momentum_masking=not args.no_masking,
            aggregation=args.aggregation,
            value_dtype=args.value_dtype,
            index_coding=args.index_coding,
            **common,
        )
    hook = {"ddp": "allreduce", "bf16": "bf16", "powersgd": "powersgd"}[method]
    return CommHookDDPStrategy(hook=hook, powersgd_rank=args.powersgd_rank, **common)


def run(method: str, victim: Victim, config: dict, args: argparse.Namespace) -> dict:
    pl.seed_everything(args.seed, workers=True)
    settings = architecture_settings(config["model"]["init_args"])
    settings.update(optimizer="sgd", lr=args.lr, momentum=0.9, nesterov=args.nesterov, weight_decay=args.weight_decay,
                    lr_schedule="onecycle")
    model = victim.model(**settings)
    data = victim.data(args.root, args.batch_size, args.seed)
    callbacks: list[Callback] = [OneThreadPerRank(), CollectStats()]
    if method == "dgc":
        callbacks.append(DGCMonitor())
    run_dir = REPO / "runs" / "dgc_bench" / f"accuracy-{args.victim}-{method}"
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy(method, args),
        gradient_clip_val=None if method == "dgc" else args.clip,
        use_distributed_sampler=config["trainer"].get("use_distributed_sampler", True),
        max_epochs=args.epochs,
        limit_train_batches=args.limit_train_batches,
        check_val_every_n_epoch=args.epochs,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run_dir,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}

    # The trained weights of rank 0 are back in this process: the victim's own test stage, on one device.
    tester = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=run_dir)
    tested = tester.test(model, datamodule=data, verbose=False)[0]
    params = [p for p in model.parameters() if p.requires_grad]
    dense = 4 * sum(p.numel() for p in params)
    sent = {"ddp": dense, "bf16": dense // 2, "powersgd": powersgd_bytes([list(p.shape) for p in params], args.powersgd_rank),
            "dgc": metrics.get("bench/bytes_per_step", float("nan"))}[method]
    return {
        "method": method,
        **{name: float(tested[name]) for name in victim.metrics},
        "test_items": len(tester.test_dataloaders.dataset),
        "steps": int(metrics["bench/steps"]),
        "seconds": seconds,
        "bytes_per_step": sent,
        "ratio_overall": dense / sent,
        "ratio_final": metrics.get("dgc/compression_ratio", dense / sent),
        # what each rank sent to the other over the run, per step (2 ranks: a dense fp32 all-reduce sends `dense`)
        "wire_bytes_per_step": metrics.get("bench/wire_bytes_per_step", float(dense if method == "ddp" else sent)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--victim", default="kws", choices=sorted(VICTIMS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--root", help="corpus; default: the one the victim's demo config builds")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="per rank; default 16")
    parser.add_argument("--lr", type=float, help="peak SGD learning rate; default 0.01 (KWS; 0.03 does not train "
                        "TensorFlow's conv model), 0.3 (DeepSpeech)")
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction,
                        help="Nesterov momentum (DGC corrects it too); default: on for DeepSpeech, off for KWS")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--density", type=float, default=0.001)
    parser.add_argument("--no-masking", action="store_true", help="DGC without momentum factor masking")
    parser.add_argument("--aggregation", default="allgather", choices=["allgather", "reduce_scatter"],
                        help="DGC's exchange: the paper's all-gather or the global top-k by sparse reduce-scatter")
    parser.add_argument("--value-dtype", default="fp32", choices=["fp32", "fp16", "bf16", "fp8"], help="DGC's values")
    parser.add_argument("--index-coding", default="int32", choices=["int32", "block16"], help="DGC's indices")
    parser.add_argument("--config", help="model and corpus config instead of the victim's demo one, e.g. "
                        "configs/kws/quick.yaml (the quick corpus: about half the clips)")
    parser.add_argument("--dgc-warmup-steps", type=int, default=57, help="steps per warm-up stage (57: the four "
                        "stages take 3/4 of the first KWS epoch at the default batch)")
    parser.add_argument("--clip", type=float, help="gradient norm bound: global for the dense methods, per tensor at "
                        "clip / sqrt(N) for DGC; default 5 (KWS), 1 (DeepSpeech)")
    parser.add_argument("--powersgd-rank", type=int, default=2)
    parser.add_argument("--limit-train-batches", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON results; default runs/dgc_bench/accuracy-VICTIM.json")
    args = parser.parse_args()
    victim = VICTIMS[args.victim]
    config = yaml.safe_load((REPO / victim.config).read_text())
    if args.config:
        victim = dataclasses.replace(victim, config=args.config)
        config = yaml.safe_load((REPO / victim.config).read_text())
    args.root = args.root or config["data"]["init_args"]["root"]
    args.lr = args.lr or victim.lr
    args.batch_size = args.batch_size or victim.batch_size
    args.clip = victim.clip if args.clip is None else args.clip
    args.nesterov = victim.nesterov if args.nesterov is None else args.nesterov
    args.out = args.out or str(REPO / f"runs/dgc_bench/accuracy-{args.victim}.json")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{args.victim} victim, 2 CPU gloo ranks - {datetime.date.today()} - {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores - torch {torch.__version__} - {args.epochs} epochs, batch {args.batch_size} per rank, "
          f"SGD lr {args.lr} onecycle, momentum 0.9{' (Nesterov)' if args.nesterov else ''}, wd {args.weight_decay}, "
          f"clip {args.clip}, seed {args.seed}, "
          f"DGC warm-up stages of {args.dgc_warmup_steps} steps{', no momentum masking' if args.no_masking else ''}, "
          f"DGC {args.aggregation} {args.value_dtype} values {args.index_coding} indices, config {victim.config}")
    results = []
    for method in args.methods:
        result = run(method, victim, config, args)
        results.append(result)
        print(json.dumps(result), flush=True)
    names = [name.removeprefix("test/") for name in victim.metrics]
    print(f"\n{'method':<10} " + " ".join(f"{'test ' + n:>9} {'+/- 1 s.e.':>10}" for n in names)
          + f" {'steps':>6} {'bytes/step':>12} {'ratio':>8} {'time':>7}")
    for r in results:
        cells = []
        for name in victim.metrics:
            # Binomial standard error over test items: exact for accuracy, a rough guide for error rates.
            value = r[name]
            se = math.sqrt(max(value * (1 - value), 0.0) / r["test_items"])
            cells.append(f"{100 * value:>8.2f}% {100 * se:>9.2f}%")
        print(f"{r['method']:<10} " + " ".join(cells) + f" {r['steps']:>6} {r['bytes_per_step'] / 1e3:>9.1f} kB "
              f"{r['ratio_overall']:>7.1f}x {r['seconds']:>6.0f}s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "date": str(datetime.date.today()), "results": results}, indent=2))


if __name__ == "__main__":
    main()
