"""Is it the size of a perturbation or its shape? Trained detectors on attacks made louder and quieter.

When a detector trained on one attack misses another (the grid's unknown-attack rows), two explanations compete:
the other attack's perturbations are quieter than the ones it learned, or they are of another kind. This job
separates them. For each successful adversarial clip of a corpus's split it takes the perturbation as written (the
adversarial clip minus its clean clip) and scores, with trained detectors (one per seed),

- ``attack``: the clean clip plus the perturbation scaled by each gain;
- ``noise``: the clean clip plus white Gaussian noise of the same energy (the noise control at the same SNR),

each against the clean clips they were made from, one per attack (ROC-AUC, mean ± std over the detectors' seeds), so
a vanishing perturbation scores 0.5 exactly. (The grid's test rows rank attacks against every clean clip of the
split, most of them from other sources; with a handful of attacked sources that ranking also measures how those
sources differ from the rest.) If loudness were what a
detector had learned, a louder perturbation would be caught and same-energy noise with it; if it had learned the
shape of its training attack's perturbation, gain alone does not make another attack detectable::

    lit-app perturbation-gain -c configs/detector/perturbation_gain_demo.yaml

Scaled clips are rounded onto the 16-bit grid and clipped, as a written clip would be; the noise draws are seeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torchmetrics.functional.classification import binary_auroc

from lit_app.advsets.detection import collate_detection
from lit_app.advsets.manifest import read_manifest
from lit_app.audio.io import SAMPLE_RATE, STRICT, read_audio
from lit_app.audio.pcm import quantize
from lit_app.device import resolve_device
from lit_app.experiments.figures import pyplot, save_png
from lit_app.experiments.noise_flooding import load_detectors
from lit_app.experiments.results_table import format_cell
from lit_app.folders import write_json_atomic
from lit_app.splits import SPLITS

#: bands of :func:`band_shares`, Hz (the last edge includes Nyquist)
BAND_EDGES_HZ = (0.0, 1000.0, 2000.0, 4000.0, SAMPLE_RATE / 2 + 1)


class Pair(NamedTuple):
    """One adversarial clip as its clean clip plus a perturbation."""

    source_id: str
    clean: torch.Tensor
    delta: torch.Tensor


def perturbation_pairs(corpus: Path, split: str) -> list[Pair]:
    """Each successful adversarial clip of a corpus's ``split``: its clean clip and its perturbation.

    Raises:
        ValueError: the split has no adversarial clip with its clean clip beside it.
    """
    # The clips used are read strictly below (rate, channels, completeness); checking every clip of every split
    # first would open each file twice.
    rows = [row for row in read_manifest(corpus, check_audio=False) if row["split"] == split]
    clean = {row["source_id"]: read_audio(corpus / row["path"], STRICT) for row in rows if row["kind"] == "clean"}
    pairs = []
    for row in rows:
        source = clean.get(row["source_id"])
        if row["kind"] == "adversarial" and row["success"] and source is not None:
            adversarial = read_audio(corpus / row["path"], STRICT)
            if adversarial.numel() == source.numel():
                pairs.append(Pair(row["source_id"], source, adversarial - source))
    if not pairs:
        raise ValueError(f"{corpus}: no successful adversarial clip of the {split} split has its clean clip in the "
                         "corpus; perturbation-gain needs a set built by `lit-app generate` (clean clips beside the "
                         "attacked ones) and a split that has attacks")
    return pairs


def amplified(pairs: list[Pair], gain_db: float) -> list[torch.Tensor]:
    """Each clean clip plus its perturbation scaled by ``gain_db``, on the 16-bit grid."""
    gain = 10 ** (gain_db / 20)
    return [quantize(clean + gain * delta) for _, clean, delta in pairs]


def same_energy_noise(pairs: list[Pair], gain_db: float, seed: int) -> list[torch.Tensor]:
    """Each clean clip plus white Gaussian noise with the energy of its scaled perturbation, on the 16-bit grid."""
    gain = 10 ** (gain_db / 20)
    generator = torch.Generator().manual_seed(seed)
    noisy = []
    for _, clean, delta in pairs:
        noise = torch.randn(delta.numel(), generator=generator)
        noisy.append(quantize(clean + noise * (gain * delta.norm() / noise.norm())))
    return noisy


def median_snr_db(pairs: list[Pair], gain_db: float) -> float:
    """Median SNR (clean clip against the scaled perturbation) over the clips."""
    snr = [20 * torch.log10(clean.norm() / delta.norm()).item() - gain_db for _, clean, delta in pairs]
    return float(torch.tensor(snr).median())


def band_shares(waves: list[torch.Tensor], edges_hz: tuple[float, ...] = BAND_EDGES_HZ) -> list[float]:
    """Share of the clips' energy in each band between ``edges_hz`` (each clip weighs the same), from a 512-point STFT."""
    import torchaudio

    spectrogram = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=256, power=2.0)
    freqs = torch.linspace(0, SAMPLE_RATE / 2, 257)
    total = torch.zeros(257)
    for wave in waves:
        power = spectrogram(wave).sum(-1)
        total += power / power.sum().clamp_min(1e-20)
    return [float(total[(freqs >= low) & (freqs < high)].sum() / total.sum())
            for low, high in zip(edges_hz[:-1], edges_hz[1:])]


def auroc_per_detector(normal: torch.Tensor, flagged: torch.Tensor) -> list[float]:
    """ROC-AUC of each detector's ``[detectors, clips]`` scores: ``flagged`` clips against ``normal`` ones."""
    labels = torch.cat([torch.zeros(normal.shape[1]), torch.ones(flagged.shape[1])]).long()
    return [float(binary_auroc(torch.cat([n, f]), labels)) for n, f in zip(normal, flagged)]


def run_perturbation_gain(
    corpora: dict[str, str],
    detectors: dict[str, str],
    seeds: list[int] = [0, 1, 2],
    gains_db: list[float] = [-20.0, -10.0, 0.0, 10.0, 20.0],
    split: str = "test",
    noise_seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    out_dir: str = "runs/perturbation-gain-demo",
) -> list[dict[str, Any]]:
    """Score every corpus's perturbations, scaled by each gain, and same-energy noise with every detector.

    Args:
        corpora: name -> adversarial corpus folder (``data/adversarial/whitebox-demo``).
        detectors: name -> checkpoint path with ``{seed}``, e.g.
            ``black: runs/detector-grid-demo/runs/black/IMFCC/seed{seed}/checkpoints/best.ckpt``.
        seeds: the detectors' seeds (each cell is mean ± std over them).
        gains_db: perturbation gains, dB (0 is the attack as made).
        split: the corpora's split to score.
        noise_seed: seed of the same-energy noise.
        batch_size: clips per batch.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda:N``.
        out_dir: where ``perturbation_gain.md``, ``.json`` and ``.png`` go.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not gains_db or not seeds:
        raise ValueError("give at least one gain (gains_db) and one detector seed (seeds)")
    target = resolve_device(device)
    loaded = load_detectors({(name, seed): path.format(seed=seed) for name, path in detectors.items()
                             for seed in seeds}, target)

    @torch.no_grad()
    def scores(waves: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``[seeds, clips]`` scores per detector name."""
        chunks = []
        for start in range(0, len(waves), batch_size):
            batch = collate_detection([(wave, 0) for wave in waves[start : start + batch_size]])
            audio, lengths = batch.audio.to(target), batch.lengths.to(target)
            chunks.append(torch.stack([module.score(audio, lengths).cpu() for module in loaded.values()]))
        every = torch.cat(chunks, 1)
        return {name: every[[i for i, key in enumerate(loaded) if key[0] == name]] for name in detectors}

    rows = []
    for corpus_name, folder in corpora.items():
        pairs = perturbation_pairs(Path(folder), split)
        normal = scores([pair.clean for pair in pairs])
        described = {"adversarial_clips": len(pairs), "sources": len({pair.source_id for pair in pairs}),
                     "band_shares": {"perturbation": band_shares([pair.delta for pair in pairs]),
                                     "clean": band_shares([pair.clean for pair in pairs])}}
        for gain in gains_db:
            attack, noise = scores(amplified(pairs, gain)), scores(same_energy_noise(pairs, gain, noise_seed))
            snr = median_snr_db(pairs, gain)
            for name in detectors:
                rows.append({"corpus": corpus_name, "detector": name, "gain_db": gain, "median_snr_db": snr, **described,
                             "attack_auroc": auroc_per_detector(normal[name], attack[name]),
                             "noise_auroc": auroc_per_detector(normal[name], noise[name])})
            print(f"{corpus_name}, gain {gain:+g} dB: " + ", ".join(
                f"{r['detector']} {format_cell(r['attack_auroc'])} (noise {format_cell(r['noise_auroc'])})"
                for r in rows[-len(detectors):]), flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "perturbation_gain.json", {"split": split, "seeds": seeds, "detectors": detectors,
                                                        "corpora": corpora, "rows": rows})
    (out / "perturbation_gain.md").write_text(gain_markdown(rows, split))
    save_gain_figure(rows, out / "perturbation_gain.png")
    print(f"perturbation gain: {out / 'perturbation_gain.md'}")
    return rows


def gain_markdown(rows: list[dict[str, Any]], split: str) -> str:
    """A table per (corpus, detector): gain, median SNR, ROC-AUC of the scaled attack and of same-energy noise."""
    parts = ["# Detection against perturbation gain", "",
             f"ROC-AUC against the clean clips they were made from ({split} split), mean ± sample std over the detectors' seeds: the "
             "attack's perturbations scaled by the gain, and white Gaussian noise of the same energy.", ""]
    for corpus, detector in dict.fromkeys((r["corpus"], r["detector"]) for r in rows):
        chosen = [r for r in rows if (r["corpus"], r["detector"]) == (corpus, detector)]
        parts += [f"## {detector} detector on {corpus} ({chosen[0]['adversarial_clips']} attacks, "
                  f"{chosen[0]['sources']} clean sources)", "",
                  "Energy by band, perturbations: " + bands_text(chosen[0]["band_shares"]["perturbation"])
                  + "; clean clips: " + bands_text(chosen[0]["band_shares"]["clean"]) + ".", "",
                  "| gain (dB) | median SNR (dB) | scaled attack | same-energy noise |", "|---|---|---|---|"]
        parts += [f"| {r['gain_db']:+g} | {r['median_snr_db']:.1f} | {format_cell(r['attack_auroc'])} | "
                  f"{format_cell(r['noise_auroc'])} |" for r in chosen]
        parts.append("")
    return "\n".join(parts)


def bands_text(shares: list[float]) -> str:
    names = [f"{low / 1000:g}-{min(high, SAMPLE_RATE / 2) / 1000:g} kHz"
             for low, high in zip(BAND_EDGES_HZ[:-1], BAND_EDGES_HZ[1:])]
    return ", ".join(f"{name} {100 * share:.0f}%" for name, share in zip(names, shares))


def save_gain_figure(rows: list[dict[str, Any]], path: Path) -> Path:
    """One panel per corpus: ROC-AUC against median SNR, a solid line per detector (attack), dashed (noise)."""
    plt = pyplot()
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    fig, axes = plt.subplots(1, len(corpora), figsize=(5 * len(corpora), 4), squeeze=False, sharey=True)
    for axis, corpus in zip(axes[0], corpora):
        for detector in dict.fromkeys(r["detector"] for r in rows):
            chosen = [r for r in rows if (r["corpus"], r["detector"]) == (corpus, detector)]
            snr = [r["median_snr_db"] for r in chosen]
            line, = axis.plot(snr, [torch.tensor(r["attack_auroc"]).mean() for r in chosen], marker="o",
                              label=f"{detector}: attack")
            axis.plot(snr, [torch.tensor(r["noise_auroc"]).mean() for r in chosen], marker="x", linestyle="--",
                      color=line.get_color(), label=f"{detector}: same-energy noise")
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.invert_xaxis()  # louder to the right
        axis.set(title=f"tested on {corpus}", xlabel="median SNR of the scaled perturbation (dB)", ylim=(0, 1.02))
        axis.legend(title="detector trained on", fontsize="small")
    axes[0][0].set_ylabel("ROC-AUC")
    return save_png(fig, path)


def main(args: list[str] | None = None) -> list[dict[str, Any]]:
    from lit_app.experiments.command import run_command

    return run_command(run_perturbation_gain, "lit-app perturbation-gain", args)


if __name__ == "__main__":
    main()
