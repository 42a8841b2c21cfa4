"""Where a keyword victim's held-out-engine gap is not: three probes on a held-out engine's test corpus.

    python benchmarks/kws_held_out_probes.py data/engine-transfer-accented-11/held-out-espeak \
        runs/<out>/runs/<variant>/without-espeak/seed0/checkpoints/best.ckpt [more checkpoints: an ensemble too]

For the first checkpoint: ``vocoded`` resynthesises every test clip through the LPC vocoder before the victim hears
it (whole envelope, and five formants: both domains through one vocoder); ``adabn`` re-estimates the victim's
batch-norm statistics on half the engine's voices (unlabelled) and scores the other half (AdaBN, Li et al. 2016), for
each checkpoint and each draw of the halves in ``adapt_splits``. With several checkpoints, their softmax-averaged
ensemble, as is and after AdaBN. Scores are keywords recognised (mean over keywords).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import torch
from jsonargparse import CLI
from torch import nn

from lit_app.audio.lpc_vocoder import LPCVocoder
from lit_app.experiments.keyword_answers import in_batches, keyword_clips, mean_keyword_accuracy
from lit_app.models.kws import KWSModule


def main(corpus: str, checkpoints: list[str], batch_size: int = 256, seed: int = 0,
         adapt_splits: list[int] | None = None) -> None:
    """Print the probes' keyword accuracies.

    Args:
        corpus: a held-out engine's test corpus (``data/engine-transfer/held-out-<engine>``).
        checkpoints: keyword victims' checkpoints; the probes use the first, the ensemble all of them.
        batch_size: clips per forward pass.
        seed: the vocoder's random pitch.
        adapt_splits: seeds of the AdaBN probe's draws of the voice halves (``None``: ``[seed]``).
    """
    torch.set_num_threads(1)
    root = Path(corpus)
    models = [KWSModule.load_from_checkpoint(path, map_location="cpu").eval() for path in checkpoints]
    labels = models[0].labels
    data = keyword_clips(root, labels, "testing")

    def probabilities(model: nn.Module, rows: torch.Tensor, vocoder: LPCVocoder | None = None) -> torch.Tensor:
        torch.manual_seed(seed)
        hear = (lambda batch: model(vocoder(batch))) if vocoder is not None else model
        return in_batches(lambda batch: hear(batch).softmax(-1), data.waveforms[rows], batch_size)

    def keywords(probs: torch.Tensor, rows: torch.Tensor) -> float:
        return mean_keyword_accuracy(probs.argmax(-1), data.target[rows], len(labels))

    every = torch.arange(len(data.clips))
    as_is = probabilities(models[0], every)
    print(f"{checkpoints[0]} on {root}: {len(data.clips)} keyword clips")
    print(f"as is: {keywords(as_is, every):.1%}")
    for name, vocoder in (("vocoded, whole envelope", LPCVocoder()), ("vocoded, five formants", LPCVocoder(formants=5))):
        print(f"{name}: {keywords(probabilities(models[0], every, vocoder), every):.1%}")
    members = [as_is] + [probabilities(model, every) for model in models[1:]]
    if len(models) > 1:
        print("members: " + ", ".join(f"{keywords(p, every):.1%}" for p in members)
              + f"; ensemble of {len(models)}: {keywords(sum(members), every):.1%}")
    voices = sorted(set(data.voices))
    for split in [seed] if adapt_splits is None else adapt_splits:
        drawn = voices.copy()
        random.Random(split).shuffle(drawn)
        adapt_voices = set(drawn[: len(drawn) // 2])
        adapt = torch.tensor([voice in adapt_voices for voice in data.voices])
        scored = (~adapt).nonzero().squeeze(1)
        adapted = [adapted_probabilities(model, data.waveforms[adapt], data.waveforms[scored], batch_size)
                   for model in models]
        before = [probs[scored] for probs in members]
        line = (f"AdaBN on half the voices (draw {split}), scored on the other half: "
                + ", ".join(f"{keywords(b, scored):.1%} -> {keywords(a, scored):.1%}" for b, a in zip(before, adapted)))
        if len(models) > 1:
            line += f"; ensemble {keywords(sum(before), scored):.1%} -> {keywords(sum(adapted), scored):.1%}"
        print(line)


def adapted_probabilities(victim: nn.Module, unlabelled: torch.Tensor, scored: torch.Tensor,
                          batch_size: int) -> torch.Tensor:
    """A copy of ``victim``'s probabilities on ``scored`` clips after its batch-norm statistics are re-estimated on
    the ``unlabelled`` ones (cumulative statistics, then frozen); ``victim`` itself is left as it was."""
    model = copy.deepcopy(victim)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
        norm.train()
    in_batches(model, unlabelled, batch_size)
    for norm in norms:
        norm.eval()
    return in_batches(lambda batch: model(batch).softmax(-1), scored, batch_size)


if __name__ == "__main__":
    CLI(main, as_positional=True)
