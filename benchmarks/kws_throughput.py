"""Keyword-spotting victim throughput: training clips/s (forward + backward + step) and inference clips/s.

    python benchmarks/kws_throughput.py [--device cuda] [--batch_sizes 32 128 512]

Prints one line per (padding, batch size). Uses random audio: throughput does not depend on content.
"""

from __future__ import annotations

import torch
from jsonargparse import CLI

from lit_app.benchmarking import machine, seconds_per_call
from lit_app.models.kws import KWSModule
from lit_app.nets.kws_cnn import CnnTradFpool3

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def measure(model: KWSModule, batch: int, device: str, train: bool, repeats: int) -> float:
    audio = torch.randn(batch, 16000, device=device) * 0.1
    target = torch.randint(0, len(model.labels), (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train(train)

    def step() -> None:
        if train:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(audio), target).backward()
            optimizer.step()
        else:
            with torch.inference_mode():
                model(audio)

    return batch / seconds_per_call(step, device, repeats)


def main(
    device: str = "cpu",
    batch_sizes: list[int] = [32, 128],
    repeats: int = 5,
    batch_norm: bool = True,
    layouts: list[str] = ["channels_last", "contiguous"],
) -> None:
    """Print training and inference throughput of the KWS victim.

    Args:
        device: torch device.
        batch_sizes: batch sizes to measure.
        repeats: timed steps per measurement.
        batch_norm: measure the network with batch normalisation after each convolution.
        layouts: activation memory layouts to compare (``channels_last``: the network's own; ``contiguous``).
    """
    print(f"device: {machine(device)}; torch {torch.__version__}")
    for layout in layouts:
        CnnTradFpool3.memory_format = LAYOUTS[layout]
        for padding in ("valid", "same"):
            model = KWSModule(padding=padding, batch_norm=batch_norm).to(device)
            for batch in batch_sizes:
                train = measure(model, batch, device, True, repeats)
                infer = measure(model, batch, device, False, repeats)
                print(f"{layout:13s} padding={padding:5s} batch={batch:5d}  train {train:9.1f} clips/s  "
                      f"inference {infer:9.1f} clips/s")


if __name__ == "__main__":
    CLI(main)
