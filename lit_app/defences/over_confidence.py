"""Over-confidence: flag clips on which a classifier victim is surer than on nearly any natural clip of that class.

Noise flooding (:mod:`lit_app.defences.noise_flooding`) catches examples left just across a decision boundary. An
attack run to a fixed budget instead of stopping at the boundary (PGD's 50 steps) overshoots it: the victim is then
more confident of the attacker's class than it is of natural speech, and noisy copies no longer change its answer
(docs/results.md, section 4.7). This check (ours) is the other side of the same question. It measures the victim's
logit margin (best class minus runner-up) on natural clips that no attack touched, per class the victim answers,
and flags a clip whose margin lies above the ``quantile`` of its answer's natural margins: with 0.995, about one
natural clip in 200. It learns from no adversarial example; it needs natural clips the victim was not trained on
(its validation clips) and a classifier (a recogniser's margin has no class to compare within).

The statistic can also be the loss's flatness: minus the log norm of the input gradient of the victim's
cross-entropy at its own answer. Far past the boundary, the loss barely moves whichever way the clip is nudged; the
margin sees only how far the best class leads. On the main job's victim and PGD (30 sources) at 0.995, the margin flags
84% of PGD and 2% of clean clips, flatness 91% and 1% (docs/results.md, section 4.7).

A flag is all or nothing: an example whose confidence lies just below the quantile counts for no more than the
median natural clip. With ``rank_weight``, the score also rises through the upper half of the natural clips: it adds
``rank_weight`` times ``2 * share - 1`` (``share``: the natural clips of the answered class less confident than the
clip), 0 at or below the natural median, ``rank_weight`` at the top. One-sided, as the check: a clip less confident
than natural speech is noise flooding's to judge, not this check's. Fused at 0.2 with the batch-norm victim, it lifts
PGD on 10 sources from 0.926 to 0.974. An attacker who knows the check keeps :meth:`OverConfidence.excess` below 0
and evades it (docs/results.md, section 4.7).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F

from lit_app.advsets.detection import collate_detection
from lit_app.attacks.victims import ClassifierVictim, Victim
from lit_app.audio.io import STRICT, read_audio

Statistic = Literal["margin", "flatness"]


def confidence(victim: ClassifierVictim, audio: torch.Tensor, statistic: Statistic = "margin",
               batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The victim's confidence ``statistic`` and answer (class index) on each ``[batch, samples]`` clip.

    ``margin``: the top logit minus the second. ``flatness``: minus the log norm of the input gradient of the
    cross-entropy at the victim's answer (a loss that underflows to a zero gradient counts as flattest).
    """
    if audio.shape[0] == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    batches = [batch_confidence(victim, audio[start : start + batch_size].to(victim.device, torch.float32), statistic)
               for start in range(0, audio.shape[0], batch_size)]
    return torch.cat([values for values, _ in batches]), torch.cat([answers for _, answers in batches])


def batch_confidence(victim: ClassifierVictim, clips: torch.Tensor, statistic: Statistic) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`confidence` of one batch, on the CPU."""
    if statistic == "margin":
        with torch.no_grad():
            values, answer = statistic_at(victim, clips, statistic)
        return values.cpu(), answer.cpu()
    clips = clips.detach().requires_grad_(True)
    with torch.enable_grad():  # flatness is a gradient, also when a caller scores under no_grad
        values, answer = statistic_at(victim, clips, statistic)
    return values.detach().cpu(), answer.cpu()


def statistic_at(victim: ClassifierVictim, clips: torch.Tensor, statistic: Statistic,
                 classes: torch.Tensor | None = None, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The victim's ``statistic`` at ``classes`` (its answer when ``None``), and those classes, for ``[batch,
    samples]`` clips. ``margin``: the class's logit minus the largest other one. ``flatness``: minus the log norm of
    the input gradient of the cross-entropy at the class; the clips must require grad. With ``create_graph``,
    flatness is differentiable in the clips too: an attacker can steer it (``lit-app adaptive``'s ``check_weight``)."""
    logits = victim.logits(clips)
    classes = logits.argmax(-1) if classes is None else classes
    if statistic == "margin":
        others = logits.scatter(1, classes[:, None], float("-inf")).amax(-1)
        return logits.gather(1, classes[:, None])[:, 0] - others, classes
    (gradient,) = torch.autograd.grad(F.cross_entropy(logits, classes, reduction="sum"), clips, create_graph=create_graph)
    return -gradient.flatten(1).norm(dim=1).clamp(min=1e-30).log(), classes


def validation_clips(source: Any) -> torch.Tensor:
    """``[clips, samples]``: the keyword clips of the validation split of a clean corpus (a data module with
    ``attack_sources``, such as ``KWSDataModule``), zero-padded: natural speech of voices its victim never trained on."""
    return collate_detection([(read_audio(clip.path, STRICT), 0) for clip in source.attack_sources() if clip.split == "val"]).audio


class OverConfidence:
    """Flag clips whose confidence exceeds the ``quantile`` of natural clips' for the class the victim answers.

    Args:
        victim: a classifier victim (:func:`lit_app.attacks.load_victim` of a keyword spotter).
        natural: ``[clips, samples]`` natural clips the victim did not train on (its validation clips).
        quantile: the share of natural clips of a class left unflagged (0.995: about 1 in 200 flagged).
        min_clips: a class the victim answers on fewer natural clips than this takes the quantile of all of them.
        statistic: ``margin`` (top logit minus the second) or ``flatness`` (minus the log norm of the loss's
            input gradient at the victim's answer); see :func:`confidence`.
        rank_weight: also add this weight times how far up the upper half of its class's natural clips a clip's
            confidence lies (0 at the median, 1 above them all), below 1 so that a flag still outweighs it; 0
            scores flags only.
    """

    def __init__(self, victim: Victim, natural: torch.Tensor, quantile: float = 0.995, min_clips: int = 20,
                 statistic: Statistic = "margin", rank_weight: float = 0.0) -> None:
        if not isinstance(victim, ClassifierVictim):
            raise ValueError(f"the over-confidence check needs a classifier victim, not a {type(victim).__name__}: "
                             "a recogniser's answer has no class whose natural margins a clip can be ranked among")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        if natural.shape[0] == 0:
            raise ValueError("the over-confidence check needs natural clips to rank margins among, got none")
        if statistic not in get_args(Statistic):
            raise ValueError(f"statistic must be one of {get_args(Statistic)}, got {statistic!r}")
        if not 0.0 <= rank_weight < 1.0:
            raise ValueError(f"rank_weight must be in [0, 1), got {rank_weight}: a rank term of 1 or more would "
                             "outweigh a flag")
        self.victim, self.statistic, self.rank_weight = victim, statistic, rank_weight
        values, answers = confidence(victim, natural, statistic)
        # a class the victim seldom answers is ranked among all natural clips
        self.natural = [values[answers == label].sort().values if (answers == label).sum() >= min_clips
                        else values.sort().values for label in range(len(victim.labels))]
        self.limits = torch.stack([reference.quantile(quantile) for reference in self.natural])
        self.medians = torch.stack([reference.median() for reference in self.natural])  # where the rank term starts

    def score(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """For each ``[batch, samples]`` clip, 1 if it lies beyond its answer's natural clips, else 0, plus
        ``rank_weight`` times its rank in their upper half (on the CPU)."""
        flags, ranks = self.flags_and_ranks(audio)
        return flags + self.rank_weight * ranks

    def flags_and_ranks(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two parts of :meth:`score` before weighting: each clip's flag (1 or 0), and ``2 * share - 1``,
        floored at 0, of its statistic among the natural clips of its answer (``share``: those less confident)."""
        values, answers = confidence(self.victim, audio, self.statistic)
        shares = torch.zeros_like(values)
        for label in answers.unique().tolist():
            rows = answers == label
            shares[rows] = torch.searchsorted(self.natural[label], values[rows]) / self.natural[label].numel()
        return (values > self.limits[answers]).float(), (2 * shares - 1).clamp(min=0)

    def excess(self, clips: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """How far each clip's statistic at ``classes`` lies above the natural median of that class (negative
        below it), differentiable in the clips: what an attacker who knows the check keeps below 0."""
        if not clips.requires_grad:  # a loss read for its value only
            clips = clips.detach().requires_grad_(True)
        with torch.enable_grad():
            values, _ = statistic_at(self.victim, clips, self.statistic, classes, create_graph=True)
        return values - self.medians.to(values.device)[classes]
