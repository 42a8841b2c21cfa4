"""Probe: is an attack that stops at its first success (BIM, PGD) unusual along the gradient, or under shifts?

Issue 25's early-stopping BIM examples sit one signed step past the keyword victim's boundary, with a clean clip's
margin, and few of them flip under noise flooding (docs/results.md, section 4.7). Two training-free questions the
earlier probes (``detector_signal_probe.py``) did not ask, each scored as ROC-AUC of a set's attacked (or noise)
test clips against its clean test clips (0.5: no signal; below 0.5: the signal points the other way):

- ``-steps to flip``: how few signed gradient steps of ``step`` int16 units, each lowering the victim's answer
  against its runner-up and rounded to the 16-bit grid, change the answer (the distance to the boundary along the
  gradient, where noise flooding measures it along random directions; Hu et al. 2019's second criterion);
- ``-linear Linf``: minus the log of the first-order estimate of that distance, margin / ||gradient of margin||_1;
- transformation flooding: the share of ``draws`` transformed copies whose answer differs from the clip's own:
  ``sub-frame shift`` (1-79 samples, under half the victim's 10 ms hop), ``shift 20-60 ms``, ``speed +-3%``
  (resampled), ``gain +-6 dB``;
- ``flooding``: noise flooding at 20 dB, 8 draws, for reference.

    python benchmarks/boundary_geometry_probe.py --sets '[data/adversarial/kws-bim-early-stop-demo,
        data/adversarial/kws-pgd-early-stop-demo, data/adversarial/kws-pgd-early-stop-noise-demo]'
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchaudio.functional as AF
from jsonargparse import CLI

sys.path.insert(0, str(Path(__file__).parent))
from detector_signal_probe import auroc, read_clips  # noqa: E402

from lit_app.attacks import load_victim  # noqa: E402
from lit_app.attacks.victims import ClassifierVictim  # noqa: E402
from lit_app.audio.pcm import FULL_SCALE  # noqa: E402
from lit_app.defences.noise_flooding import NoiseFlooding  # noqa: E402

SAMPLE_RATE = 16000
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def answer_margin(victim: ClassifierVictim, audio: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """The logit of ``answer`` minus the best other logit, per clip."""
    logits = victim.logits(audio)
    rows = torch.arange(len(audio))
    others = logits.clone()
    others[rows, answer] = -torch.inf
    return logits[rows, answer] - others.max(-1).values


def gradient_distance(victim: ClassifierVictim, audio: torch.Tensor, lengths: torch.Tensor, step: float,
                      max_steps: int) -> dict[str, torch.Tensor]:
    """``-steps to flip`` (``max_steps + 1`` for a clip that never flips) and ``-linear Linf``, per clip.

    One forward and backward pass a step: the margin that the step follows also says which clips have flipped
    (a negative margin of the first answer).
    """
    with torch.no_grad():
        answer = victim.logits(audio).argmax(-1)
    inside = (torch.arange(audio.shape[1])[None, :] < lengths[:, None]).float()
    x, steps, active = audio.clone(), torch.full((len(audio),), float(max_steps + 1)), torch.arange(len(audio))
    for k in range(max_steps + 1):
        moving = x[active].clone().requires_grad_(True)
        margin = answer_margin(victim, moving, answer[active])
        (gradient,) = torch.autograd.grad(margin.sum(), moving)
        if k == 0:
            linear = margin.detach() / (gradient.abs().sum(1) / FULL_SCALE)  # int16 units
        flipped = margin.detach() < 0
        steps[active[flipped]] = k
        active, moving, gradient = active[~flipped], moving[~flipped], gradient[~flipped]
        if not len(active) or k == max_steps:
            break
        with torch.no_grad():
            moved = (moving - step / FULL_SCALE * gradient.sign() * inside[active]).clamp(-1, 1)
            x[active] = torch.round(moved * FULL_SCALE) / FULL_SCALE
    return {"-steps to flip": -steps, "-linear Linf": -linear.log()}


def random_sign(generator: torch.Generator) -> int:
    return 1 if torch.rand(1, generator=generator) < 0.5 else -1


def transformations() -> dict[str, Transform]:
    def speed(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        factor = 1 + float(torch.rand(1, generator=g)) * 0.06 - 0.03
        return AF.resample(x, SAMPLE_RATE, round(SAMPLE_RATE / factor))[..., : x.shape[-1]]

    return {
        "sub-frame shift": lambda x, g: x.roll(int(torch.randint(1, 80, (1,), generator=g)) * random_sign(g), -1),
        "shift 20-60 ms": lambda x, g: x.roll(int(torch.randint(320, 960, (1,), generator=g)) * random_sign(g), -1),
        "speed +-3%": speed,
        "gain +-6 dB": lambda x, g: x * 10 ** ((float(torch.rand(1, generator=g)) * 12 - 6) / 20),
    }


def flip_share(victim: ClassifierVictim, audio: torch.Tensor, transform: Transform, draws: int, seed: int) -> torch.Tensor:
    """Share of ``draws`` transformed copies (one draw for the whole batch) whose answer differs, per clip."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        answer = victim.logits(audio).argmax(-1)
        flips = sum((victim.logits(transform(audio, generator)).argmax(-1) != answer).float() for _ in range(draws))
    return flips / draws


def main(sets: list[Path], victim: str = "runs/kws-demo/checkpoints/best.ckpt", step: float = 1.0,
         max_steps: int = 40, draws: int = 8, seed: int = 0) -> None:
    """Print one row per set: each signal's ROC-AUC, attacked (or noise) test clips against clean ones.

    Args:
        sets: adversarial set folders made against the keyword victim (a folder with 'noise' in its name is scored
            as a noise control).
        victim: the keyword victim's checkpoint.
        step: signed gradient step, int16 units (1: the 16-bit grid).
        max_steps: steps at most before a clip counts as never flipped.
        draws: transformed copies per clip.
        seed: seed of the transformations and of noise flooding.
    """
    torch.set_num_threads(1)
    model = load_victim(victim)
    if not isinstance(model, ClassifierVictim):
        raise SystemExit(f"{victim}: the probe needs a keyword model (a classifier)")
    flooding, transforms = NoiseFlooding(model, 20.0, 8, seed), transformations()
    for index, root in enumerate(map(Path, sets)):
        kind = "noise" if "noise" in root.name else "adversarial"
        scored = []
        for clips in (read_clips(root, kind, {"test"}), read_clips(root, "clean", {"test"})):
            signals = gradient_distance(model, *clips, step, max_steps)
            signals.update({name: flip_share(model, clips[0], t, draws, seed) for name, t in transforms.items()})
            signals["flooding"] = flooding.score(*clips)
            scored.append(signals)
        if index == 0:
            print("| set (attacked + clean) | " + " | ".join(scored[0]) + " |\n" + "|---" * (len(scored[0]) + 1) + "|")
        cells = [f"{auroc(scored[0][name], scored[1][name]):.3f}" for name in scored[0]]
        print(f"| {root.name} ({len(scored[0]['flooding'])} + {len(scored[1]['flooding'])}) | " + " | ".join(cells) + " |",
              flush=True)


if __name__ == "__main__":
    CLI(main, as_positional=False)
