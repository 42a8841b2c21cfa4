"""The figures a user looks at after a job: DET curves, a clip beside its adversarial version, SNR and dB_x histograms.

Every function writes one PNG (matplotlib, Agg backend: no display needed) and returns its path; the same files
go to W&B when a stage logs there (:mod:`lit_app.experiments.stage_log`) and into the main job's report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

DET_TICKS = [0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99]


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders made as needed), close it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return path


def save_det_figure(curves: Mapping[str, tuple[torch.Tensor, torch.Tensor]], path: str | Path, title: str = "DET") -> Path:
    """Detection error trade-off curves of ``{name: (fpr, tpr)}`` ROC curves: miss rate against false-alarm rate,
    both on normal-deviate (probit) axes, where a detector with Gaussian scores draws a straight line."""
    plt = pyplot()
    probit = torch.special.ndtri
    limit = 1e-3

    def axis(rate: torch.Tensor) -> torch.Tensor:
        return probit(rate.double().clamp(limit, 1 - limit))

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (fpr, tpr) in curves.items():
        ax.plot(axis(fpr).numpy(), axis(1.0 - tpr).numpy(), label=name)
    ticks = probit(torch.tensor(DET_TICKS, dtype=torch.float64)).numpy()
    labels = [f"{100 * t:g}%" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    edge = float(probit(torch.tensor(limit, dtype=torch.float64)))
    ax.set(xlabel="false-alarm rate (normal clips flagged)", ylabel="miss rate (adversarial clips passed)",
           title=title, xlim=(edge, -edge), ylim=(edge, -edge))
    ax.plot([edge, -edge], [edge, -edge], color="grey", linestyle=":", linewidth=1)  # the EER points
    ax.legend(loc="upper right", fontsize=8)
    return save_png(fig, path)


def log_spectrogram(wave: torch.Tensor, n_fft: int = 512, hop: int = 128) -> torch.Tensor:
    """Power spectrogram in dB ``[freq, frames]`` of a 1-D waveform (floor -120 dB)."""
    import torchaudio

    power = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop, power=2.0)(wave.float())
    return 10.0 * torch.log10(power.clamp(min=1e-12))


def save_pair_figure(clean: torch.Tensor, adversarial: torch.Tensor, path: str | Path, title: str = "",
                     sample_rate: int = 16000) -> Path:
    """Spectrograms of a clean clip, its adversarial version and the perturbation (their difference), one above
    the other on the same colour scale (the perturbation's own scale drawn from its quietest tenth)."""
    plt = pyplot()
    samples = min(clean.numel(), adversarial.numel())
    clean, adversarial = clean[:samples], adversarial[:samples]
    parts = {"clean": clean, "adversarial": adversarial, "perturbation (adversarial - clean)": adversarial - clean}
    spectra = {name: log_spectrogram(wave) for name, wave in parts.items()}
    top = float(spectra["clean"].max())
    fig, axes = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    seconds, nyquist = samples / sample_rate, sample_rate / 2000
    for ax, (name, spectrum) in zip(axes, spectra.items()):
        image = ax.imshow(spectrum.numpy(), origin="lower", aspect="auto", extent=(0, seconds, 0, nyquist),
                          vmin=top - 90, vmax=top, cmap="magma")
        ax.set(ylabel="kHz", title=name)
    axes[-1].set_xlabel("seconds")
    fig.colorbar(image, ax=list(axes), label="dB")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def save_histograms(values: Mapping[str, Sequence[float]], path: str | Path, title: str = "") -> Path:
    """One histogram per named quantity (e.g. SNR dB and dB_x of the successful examples), side by side."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(values), figsize=(4.5 * len(values), 3.5), squeeze=False)
    for ax, (name, data) in zip(axes[0], values.items()):
        finite = [v for v in data if v is not None and v == v]
        if finite:
            ax.hist(finite, bins=min(30, max(5, len(finite) // 3)), color="tab:blue", alpha=0.8)
        ax.set(xlabel=name, ylabel="examples", title=f"{name} ({len(finite)} examples)")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_png(fig, path)


def save_curve_figure(x: Sequence[float], series: Mapping[str, Sequence[float]], path: str | Path, xlabel: str,
                      title: str = "") -> Path:
    """Lines of ``series`` against ``x`` (the adaptive attacker: rates against the detector-loss weight)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel="rate", ylim=(-0.02, 1.02), title=title)
    if len(x) > 1 and min(x) >= 0 and max(x) > 0:
        ax.set_xscale("symlog", linthresh=min([v for v in x if v > 0]))
    ax.legend(fontsize=8)
    return save_png(fig, path)
