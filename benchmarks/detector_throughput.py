"""Detector throughput: clips/s for training steps, scoring, and the adaptive attacker's gradient to the input.

    python benchmarks/detector_throughput.py [--device cuda] [--batch_sizes '[64, 256]'] [--seconds 3.0]

One line per (set-up, batch size). "train" is forward + backward + Adam step; "score" is inference;
"input grad" is forward + backward to the waveform (one step of the adaptive attack's detector term).
Random audio: throughput does not depend on content. Set-ups: the ICASSP paper's (whole utterances, 40 MFCC at
25/10 ms, 698 frames, 7.1 M parameters), the follow-up's (512 ms blocks, 20 coefficients at 32/16 ms), and the
stronger ResCNN on blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jsonargparse import CLI

from lit_app.benchmarking import machine, seconds_per_call
from lit_app.models.detector import DetectorModule

SETUPS = {
    "paper, utterance 698x40 MFCC": dict(backbone="paper", input_mode="utterance", n_coefficients=40, win_ms=25.0,
                                         hop_ms=10.0, max_frames=698, feature_norm="none"),
    "paper, 512 ms blocks 31x20 IMFCC": dict(backbone="paper", input_mode="blocks", feature="imfcc", n_coefficients=20,
                                             win_ms=32.0, hop_ms=16.0),
    "rescnn, 512 ms blocks 31x20 IMFCC": dict(backbone="rescnn", input_mode="blocks", feature="imfcc",
                                              n_coefficients=20, win_ms=32.0, hop_ms=16.0),
}


def measure(detector: DetectorModule, batch: int, seconds: float, device: str, repeats: int) -> dict[str, float]:
    samples = int(seconds * 16000)
    audio = torch.randn(batch, samples, device=device) * 0.1
    lengths = torch.full((batch,), samples, device=device)
    labels = torch.randint(0, 2, (batch,), device=device)
    optimizer = torch.optim.Adam(detector.parameters(), lr=1e-4)

    def train() -> None:
        detector.train()
        optimizer.zero_grad()
        F.cross_entropy(detector(audio, lengths), labels).backward()
        optimizer.step()

    def score() -> None:
        detector.eval()
        with torch.inference_mode():
            detector.score(audio, lengths)

    def input_grad() -> None:
        detector.eval()
        wave = audio.clone().requires_grad_()
        (grad,) = torch.autograd.grad(detector(wave, lengths)[:, 1].sum(), wave)

    return {name: batch / seconds_per_call(step, device, repeats) for name, step in
            (("train", train), ("score", score), ("input grad", input_grad))}


def main(device: str = "cpu", batch_sizes: list[int] = [16, 64], seconds: float = 3.0, repeats: int = 3) -> None:
    """Print training, scoring and input-gradient throughput (clips/s) of the detector set-ups.

    Args:
        device: torch device.
        batch_sizes: batch sizes to measure.
        seconds: clip length (the white-box set's sentences are 1-7 s; keywords 1 s).
        repeats: timed steps per measurement.
    """
    name = machine(device)
    print(f"device: {name}; torch {torch.__version__}; {seconds:g} s clips; clips/s")
    print("| set-up | parameters | batch | train | score | input grad |")
    print("|---|---|---|---|---|---|")
    for setup, settings in SETUPS.items():
        detector = DetectorModule(**settings).to(device)
        parameters = sum(p.numel() for p in detector.parameters())
        for batch in batch_sizes:
            rates = measure(detector, batch, seconds, device, repeats)
            print(f"| {setup} | {parameters / 1e6:.2f} M | {batch} | {rates['train']:.0f} | {rates['score']:.0f} | "
                  f"{rates['input grad']:.0f} |", flush=True)


if __name__ == "__main__":
    CLI(main)
