"""Training throughput (utterances per second) and gradient size of the DeepSpeech victim, both sizes.

The model settings come from the configs (``configs/asr/demo.yaml``: small, ``configs/asr/full.yaml``: paper
size), so the numbers describe what those configs train. One training step is the feature front-end,
DeepSpeech, CTC loss, backward and an AdamW update on a batch of equal-length clips; data loading is not
included. Runs on the GPU when there is one (``--device``), and needs neither soundfile nor jsonargparse.

    flock /tmp/cpu.lock python benchmarks/deepspeech_throughput.py            # CPU here
    python benchmarks/deepspeech_throughput.py --precision bf16-mixed          # on a GPU machine
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch
import yaml

from lit_app.base import architecture_settings
from lit_app.benchmarking import machine, seconds_per_call
from lit_app.models.asr import DeepSpeechModule

REPO = Path(__file__).resolve().parents[1]

SIZES = {"small (demo.yaml)": REPO / "configs/asr/demo.yaml", "full (full.yaml)": REPO / "configs/asr/full.yaml"}


def model_from_config(path: Path) -> DeepSpeechModule:
    return DeepSpeechModule(**architecture_settings(yaml.safe_load(path.read_text())["model"]["init_args"]))


def measure(model: DeepSpeechModule, batch_size: int, seconds: float, steps: int, warmup: int,
            device: torch.device, precision: str) -> float:
    """Utterances per second over ``steps`` timed training steps."""
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    samples = int(seconds * model.sample_rate)
    generator = torch.Generator().manual_seed(0)
    waveforms = (0.1 * torch.randn(batch_size, samples, generator=generator)).to(device)
    lengths = torch.full((batch_size,), samples, device=device)
    chars = int(12 * seconds)  # about the speaking rate of the corpora: well within CTC's frame budget
    targets = torch.randint(3, len(model.alphabet), (batch_size, chars), generator=generator).to(device)
    target_lengths = torch.full((batch_size,), chars, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            log_probs, frames = model(waveforms, lengths)
        loss = model.ctc_loss(log_probs, frames, targets, target_lengths)
        loss.backward()
        optimizer.step()

    return batch_size / seconds_per_call(step, device, steps, warmup=warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 on CPU, 20 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 1 on CPU, 5 on GPU)")
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    where = machine(device)
    print(f"DeepSpeech training throughput - {datetime.date.today()} - {device.type} ({where}) - torch {torch.__version__}")
    print(f"batch {args.batch_size} x {args.seconds:g} s clips, {args.precision}, {steps} timed steps after {warmup}")
    print(f"{'size':<20} {'hidden':>6} {'parameters':>12} {'gradient MB':>12} {'gradient MiB':>13} {'utterances/s':>13}")
    for name, config in SIZES.items():
        model = model_from_config(config)
        params = model.parameter_counts()["total"]
        rate = measure(model, args.batch_size, args.seconds, steps, warmup, device, args.precision)
        print(f"{name:<20} {model.hparams.n_hidden:>6} {params:>12,} {params * 4 / 1e6:>12.1f} "
              f"{params * 4 / 2**20:>13.1f} {rate:>13.1f}")


if __name__ == "__main__":
    main()
