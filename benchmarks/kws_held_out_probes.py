"""Where a keyword victim's held-out-engine gap is not: three probes on a held-out engine's test corpus.

    python benchmarks/kws_held_out_probes.py data/engine-transfer-accented-11/held-out-espeak \
        runs/<out>/runs/<variant>/without-espeak/seed0/checkpoints/best.ckpt [more checkpoints: an ensemble too]

For the first checkpoint: ``vocoded`` resynthesises every test clip through the LPC vocoder before the victim hears
it (whole envelope, and five formants: both domains through one vocoder); ``adabn`` re-estimates the victim's
batch-norm statistics on half the engine's voices (unlabelled) and scores the other half (AdaBN, Li et al. 2016).
With several checkpoints, their softmax-averaged ensemble. Scores are keywords recognised (mean over keywords).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import torch
from jsonargparse import CLI
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy

from lit_app.audio.io import AudioPolicy
from lit_app.audio.lpc_vocoder import LPCVocoder
from lit_app.audio.pcm import pcm16_to_float
from lit_app.data.speech_commands import load_clips, scan
from lit_app.data.vocab import SILENCE, UNKNOWN
from lit_app.models.kws import KWSModule


def main(corpus: str, checkpoints: list[str], batch_size: int = 256, seed: int = 0) -> None:
    """Print the probes' keyword accuracies.

    Args:
        corpus: a held-out engine's test corpus (``data/engine-transfer/held-out-<engine>``).
        checkpoints: keyword victims' checkpoints; the probes use the first, the ensemble all of them.
        batch_size: clips per forward pass.
        seed: the vocoder's random pitch and the voice halves of the AdaBN probe.
    """
    torch.set_num_threads(1)
    root = Path(corpus)
    models = [KWSModule.load_from_checkpoint(path, map_location="cpu").eval() for path in checkpoints]
    index = {label: i for i, label in enumerate(models[0].labels)}
    clips = [clip for clip in scan(root)["testing"] if clip.word in index and clip.word not in (UNKNOWN, SILENCE)]
    audio, kept, _ = load_clips(root, clips, AudioPolicy(), skip_bad=True)
    clips = [clips[i] for i in kept]
    waves = pcm16_to_float(audio)
    target = torch.tensor([index[clip.word] for clip in clips])
    with open(root / "manifest.csv", newline="") as handle:
        voice_of = {row["path"]: row["voice"] for row in csv.DictReader(handle)}

    def probabilities(model: nn.Module, rows: torch.Tensor, vocoder: LPCVocoder | None = None) -> torch.Tensor:
        torch.manual_seed(seed)
        out = []
        with torch.no_grad():
            for start in range(0, int(rows.numel()), batch_size):
                batch = waves[rows[start : start + batch_size]]
                out.append(model(vocoder(batch) if vocoder is not None else batch).softmax(-1))
        return torch.cat(out)

    def keywords(probs: torch.Tensor, rows: torch.Tensor) -> float:
        per_label = multiclass_accuracy(probs.argmax(-1), target[rows], len(index), average=None)
        return float(per_label[target[rows].unique()].mean())

    every = torch.arange(len(clips))
    print(f"{checkpoints[0]} on {root}: {len(clips)} keyword clips")
    print(f"as is: {keywords(probabilities(models[0], every), every):.1%}")
    for name, vocoder in (("vocoded, whole envelope", LPCVocoder()), ("vocoded, five formants", LPCVocoder(formants=5))):
        print(f"{name}: {keywords(probabilities(models[0], every, vocoder), every):.1%}")
    if len(models) > 1:
        members = [probabilities(model, every) for model in models]
        print("members: " + ", ".join(f"{keywords(p, every):.1%}" for p in members)
              + f"; ensemble of {len(models)}: {keywords(sum(members), every):.1%}")
    voices = sorted(set(voice_of[clip.path] for clip in clips))
    random.Random(seed).shuffle(voices)
    adapt_voices = set(voices[: len(voices) // 2])
    adapt = torch.tensor([voice_of[clip.path] in adapt_voices for clip in clips])
    scored = (~adapt).nonzero().squeeze(1)
    before = keywords(probabilities(models[0], scored), scored)
    norms = [m for m in models[0].modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:  # cumulative statistics of the unlabelled half, then frozen
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    probabilities(models[0], adapt.nonzero().squeeze(1))
    for norm in norms:
        norm.eval()
    print(f"AdaBN ({len(norms)} batch-norm layers) on half the voices, scored on the other half: "
          f"{before:.1%} -> {keywords(probabilities(models[0], scored), scored):.1%}")


if __name__ == "__main__":
    CLI(main, as_positional=True)
