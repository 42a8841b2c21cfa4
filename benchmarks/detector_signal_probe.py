"""Probe: which training-free signal of the keyword victim separates each attack, and the noise control, from clean?

Issue 25 asks for a detector that holds on attacks it never saw and does not flag the noise control. Noise flooding
catches attacks that stop just past the victim's decision boundary and misses PGD; the trained CNNs catch PGD and
flag the noise control. This probe scores the clips of adversarial sets made against the keyword victim with
signals that need no training, and prints the ROC-AUC of each set's attacked (or noise) clips against its clean
clips (0.5: no signal; below 0.5: the signal points the other way):

- ``margin``: the victim's top-1 minus top-2 logit (high: over-confident);
- ``energy``: the log-sum-exp of the victim's logits (high: far from every class's boundary; the energy score of
  Liu et al. 2020, read the other way round);
- ``small grad``: minus the norm of the input gradient of the victim's loss at its own answer;
- ``drop <T>``: how much the victim's probability of its answer falls when the clip goes through transformation T
  (spectral-gating denoiser, mel spectrogram resynthesised by Griffin-Lim, 64-level mu-law, white noise at 5 dB,
  a 5-tap moving average): the input-transformation detectors of WaveGuard (Hussain et al. 2021);
- ``flooding``: noise flooding at 20 dB, 8 draws (``lit_app.defences.noise_flooding``);
- ``fused``: the larger of flooding's and the margin's empirical CDF over the clean ``val`` clips of every set
  given (a calibration that sees no attack);
- ``z max``: the larger of flooding's and the log-margin's z-scores over those clips (unlike a CDF, it keeps
  ranking clips beyond the calibration's range);
- ``joint``: how far a clip's (flooding, margin) pair lies from those clips' pairs, a Mahalanobis distance after
  mapping each signal through its empirical CDF to a normal quantile (a Gaussian copula: the two signals are
  correlated in clean speech, confident clips resisting the noise);
- with ``--second_opinion CKPT``, ``disagree``: one minus a second keyword model's probability of the victim's
  answer (an attack made for one model rarely fools another the same way: the multiversion detector of Zeng et
  al. 2019), and ``flooding or disagree``: the larger of the two signals' empirical CDFs over the clean ``val`` clips.

    python benchmarks/detector_signal_probe.py data/adversarial/kws-pgd-demo data/adversarial/blackbox-demo \
        data/adversarial/blackbox-noise-demo data/adversarial/kws-square-demo     # about 4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
import torchaudio.functional as AF
import torchaudio.transforms as T
from torchmetrics.functional.classification import binary_auroc

from lit_app.advsets.detection import DetectionClipDataset, collate_detection
from lit_app.advsets.manifest import read_manifest
from lit_app.attacks import load_victim
from lit_app.attacks.victims import ClassifierVictim
from lit_app.audio.noise import add_white_noise_at_snr
from lit_app.defences.noise_flooding import NoiseFlooding

SAMPLE_RATE = 16000
N_FFT, HOP = 512, 128


def read_clips(root: Path, kind: str, splits: set[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded ``[clips, samples]`` audio and lengths of the ``kind`` clips (clean, adversarial, noise) of a set."""
    paths = [str(root / row["path"]) for row in read_manifest(root, check_audio=False)
             if row["kind"] == kind and row["split"] in splits]
    if not paths:
        return torch.zeros(0, SAMPLE_RATE), torch.zeros(0, dtype=torch.long)
    dataset = DetectionClipDataset([(path, 0) for path in paths])
    batch = collate_detection([dataset[i] for i in range(len(dataset))])
    return batch.audio, batch.lengths


def transformations() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    spec = T.Spectrogram(n_fft=N_FFT, hop_length=HOP, power=None)
    inverse = T.InverseSpectrogram(n_fft=N_FFT, hop_length=HOP)
    mel = T.MelSpectrogram(SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=64)
    inverse_mel = T.InverseMelScale(N_FFT // 2 + 1, n_mels=64, sample_rate=SAMPLE_RATE)
    griffin_lim = T.GriffinLim(n_fft=N_FFT, hop_length=HOP, n_iter=32, rand_init=False)

    def denoise(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        stft = spec(x)
        floor = torch.quantile(stft.abs(), 0.2, dim=-1, keepdim=True)  # the noise floor: each bin's quiet frames
        gain = (1 - 1.5 * floor / stft.abs().clamp(min=1e-8)).clamp(min=0.05)
        return inverse(stft * gain, length=x.shape[-1])

    return {
        "denoise": denoise,
        "resynth": lambda x, lengths: griffin_lim(inverse_mel(mel(x)))[..., : x.shape[-1]],
        "mu-law 64": lambda x, lengths: AF.mu_law_decoding(AF.mu_law_encoding(x, 64), 64),
        "noise 5 dB": lambda x, lengths: add_white_noise_at_snr(x, lengths, torch.full((x.shape[0],), 5.0)),
        "smooth 5": lambda x, lengths: torch.nn.functional.avg_pool1d(x[:, None], 5, 1, 2, count_include_pad=False)[:, 0],
    }


def logit_margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 logit per clip."""
    top2 = logits.topk(2, -1).values
    return top2[:, 0] - top2[:, 1]


def disagreement(second_opinion: ClassifierVictim, audio: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """One minus the second model's probability of the victim's ``answer``, per clip."""
    with torch.no_grad():
        return 1 - second_opinion.logits(audio).softmax(-1).gather(1, answer[:, None])[:, 0]


def victim_signals(
    victim: ClassifierVictim,
    audio: torch.Tensor,
    lengths: torch.Tensor,
    transforms: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
    second_opinion: ClassifierVictim | None = None,
) -> dict[str, torch.Tensor]:
    """Every signal but flooding, per clip; higher means more suspicious."""
    audio = audio.clone().requires_grad_(True)
    logits = victim.logits(audio)
    answer = logits.argmax(-1)
    (gradient,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, answer, reduction="sum"), audio)
    probability = logits.detach().softmax(-1).gather(1, answer[:, None])[:, 0]
    signals = {"margin": logit_margin(logits.detach()), "energy": logits.detach().logsumexp(-1),
               "small grad": -gradient.norm(dim=-1)}
    if second_opinion is not None:
        signals["disagree"] = disagreement(second_opinion, audio.detach(), answer)
    with torch.no_grad():
        for name, transform in transforms.items():
            torch.manual_seed(0)
            after = victim.logits(transform(audio.detach(), lengths)).softmax(-1).gather(1, answer[:, None])[:, 0]
            signals[f"drop {name}"] = probability - after
    return signals


def empirical_cdf(reference: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Mid-rank empirical CDF of ``scores`` against ``reference``."""
    below = (reference[None, :] < scores[:, None]).float().mean(1)
    return below + 0.5 * (reference[None, :] == scores[:, None]).float().mean(1)


def larger_tail(*pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The larger of several signals' empirical CDFs, each ``(clean reference, scores)``: a clip is as suspicious
    as its most unusual signal."""
    return torch.stack([empirical_cdf(reference, scores) for reference, scores in pairs]).amax(0)


class CleanReference:
    """Clean ``val`` clips' flooding scores and margins, and the calibrated scores built on them."""

    def __init__(self, flooding: torch.Tensor, margin: torch.Tensor) -> None:
        self.margin = margin
        self.signals = torch.stack([flooding, margin.clamp(min=1e-3).log()], 1)
        self.mean, self.std = self.signals.mean(0), self.signals.std(0)
        normal = self.normal_quantiles(self.signals)
        self.centre, self.precision = normal.mean(0), torch.linalg.inv(torch.cov(normal.T))

    def normal_quantiles(self, signals: torch.Tensor) -> torch.Tensor:
        count = len(self.signals)
        cdf = torch.stack([empirical_cdf(self.signals[:, j], signals[:, j]) for j in range(2)], 1)
        return torch.distributions.Normal(0.0, 1.0).icdf((cdf * count + 0.5) / (count + 1))

    def scores(self, flooding: torch.Tensor, margin: torch.Tensor) -> dict[str, torch.Tensor]:
        signals = torch.stack([flooding, margin.clamp(min=1e-3).log()], 1)
        centred = self.normal_quantiles(signals) - self.centre
        return {
            "fused": larger_tail((self.signals[:, 0], flooding), (self.margin, margin)),
            "z max": ((signals - self.mean) / self.std).max(1).values,
            "joint": (centred @ self.precision * centred).sum(1),
        }


def auroc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """ROC-AUC of ``positive`` against ``negative`` scores of any range.

    torchmetrics passes scores outside [0, 1] through a float32 sigmoid, which ties every score above about 17 (a
    logit margin, a Mahalanobis distance); their ranks, scaled into [0, 1], keep the order and the ties.
    """
    scores = torch.cat([positive, negative]).double()
    _, rank = torch.unique(scores, return_inverse=True)
    labels = torch.cat([torch.ones(len(positive)), torch.zeros(len(negative))]).long()
    return float(binary_auroc(rank.float() / max(int(rank.max()), 1), labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", type=Path, help="adversarial set folders made against the keyword victim "
                        "(a folder with 'noise' in its name is scored as a noise control)")
    parser.add_argument("--victim", default="runs/kws-demo/checkpoints/best.ckpt")
    parser.add_argument("--split", default="test", help="the split scored; calibration uses 'val'")
    parser.add_argument("--seed", type=int, default=0, help="noise flooding's noise seed")
    parser.add_argument("--second_opinion", help="a second keyword model trained on the victim's training clips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    victim = load_victim(args.victim)
    second_opinion = load_victim(args.second_opinion) if args.second_opinion else None
    for path, model in ((args.victim, victim), (args.second_opinion, second_opinion)):
        if model is not None and not isinstance(model, ClassifierVictim):
            raise SystemExit(f"{path}: the probe needs keyword models (classifiers)")
    flooding = NoiseFlooding(victim, 20.0, 8, args.seed)
    calibration = [torch.cat(parts) for parts in zip(*(read_clips(s, "clean", {"val"}) for s in args.sets))]
    with torch.no_grad():
        clean_logits = victim.logits(calibration[0])
        reference = CleanReference(flooding.score(*calibration), logit_margin(clean_logits))
    if second_opinion is not None:
        clean_disagreement = disagreement(second_opinion, calibration[0], clean_logits.argmax(-1))
    transforms = transformations()
    header = None
    for root in args.sets:
        kind = "noise" if "noise" in root.name else "adversarial"
        scored = {}
        for label, clips in (("attacked", read_clips(root, kind, {args.split})), ("clean", read_clips(root, "clean", {args.split}))):
            signals = victim_signals(victim, *clips, transforms, second_opinion)
            signals["flooding"] = flooding.score(*clips)
            signals.update(reference.scores(signals["flooding"], signals["margin"]))
            if second_opinion is not None:
                signals["flooding or disagree"] = larger_tail((reference.signals[:, 0], signals["flooding"]),
                                                              (clean_disagreement, signals["disagree"]))
            scored[label] = signals
        if header is None:
            header = list(scored["clean"])
            print(f"| set ({args.split}, attacked + clean) | " + " | ".join(header) + " |")
            print("|---" * (len(header) + 1) + "|")
        cells = [f"{auroc(scored['attacked'][name], scored['clean'][name]):.3f}" for name in header]
        print(f"| {root.name} ({len(scored['attacked']['margin'])} + {len(scored['clean']['margin'])}) | "
              + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
