"""The attack interface: a victim, a batch of clean clips and targets in; adversarial clips and results out.

Every attack is called the same way::

    output = attack(victim, waveforms, lengths, targets, seed=0)
    output.adversarial   # [batch, samples] float, on the 16-bit grid: exactly what gets written
    output.results[i]    # AttackResult: success, prediction, queries, iterations, dB_x, SNR, ...

Inputs are moved to the victim's device and rounded to the 16-bit grid first; padding (samples past
``lengths``) is never perturbed. Success is judged on the returned, 16-bit clip. A call is deterministic
for a given seed, batch and device.

What every attack needs before its own work (the targets encoded for the victim, which clips can reach them,
the mask of valid samples, per-clip counters) is made once, here, as an :class:`AttackBatch`; an attack's
:meth:`Attack.run` starts from it and returns the adversarial clips.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from lit_app.attacks import metrics
from lit_app.attacks.victims import Encoded, Victim


@dataclass(frozen=True)
class AttackResult:
    """What an attack did to one clip.

    Args:
        target: the wanted output, as the victim spells it.
        prediction: the victim's output on the returned (16-bit) adversarial clip.
        success: ``prediction == target``.
        queries: forward passes of the victim the attack spent on this clip (gradient steps and checks
            included; the final judgement of the returned clip is not counted).
        iterations: optimisation steps or generations run for this clip.
        db_x: ``20 log10 max|d| - 20 log10 max|x|`` of the written perturbation.
        snr_db: signal-to-noise ratio of clip over perturbation, dB.
        linf: largest sample change, int16 units.
        feasible: whether the target could be reached at all (a CTC target needs enough frames).
    """

    target: str
    prediction: str
    success: bool
    queries: int
    iterations: int
    db_x: float
    snr_db: float
    linf: int
    feasible: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AttackOutput:
    """Adversarial clips ``[batch, samples]`` (CPU, on the 16-bit grid) and one result per clip."""

    adversarial: torch.Tensor
    results: list[AttackResult]

    @property
    def success_rate(self) -> float:
        return sum(r.success for r in self.results) / max(len(self.results), 1)


@dataclass
class AttackBatch:
    """A batch as :meth:`Attack.run` receives it: on the victim's device, on the 16-bit grid, padding zeroed.

    Args:
        clean: ``[batch, samples]`` clean clips.
        lengths: valid samples of each clip.
        targets: the wanted output of each clip, as the victim spells it.
        encoded: the targets as the victim's loss takes them (:meth:`Victim.encode`).
        feasible: which clips can reach their target at all; the others are not attacked.
        generator: the call's only source of randomness.

    ``mask`` (float, 1 on valid samples) and the per-clip counters ``queries`` and ``iterations`` (zeros, advanced
    by the attack) are made from these.
    """

    clean: torch.Tensor
    lengths: torch.Tensor
    targets: list[str]
    encoded: Encoded
    feasible: torch.Tensor
    generator: torch.Generator
    mask: torch.Tensor = field(init=False)
    queries: torch.Tensor = field(init=False)
    iterations: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.mask = metrics.valid_mask(self.lengths, self.clean.shape[1]).float()
        self.queries = torch.zeros(len(self.targets), dtype=torch.long, device=self.clean.device)
        self.iterations = torch.zeros_like(self.queries)

    def feasible_rows(self) -> torch.Tensor:
        """Indices of the clips that can reach their target: where a step-by-step attack starts."""
        return torch.nonzero(self.feasible).flatten()


class Attack(ABC):
    """Base of every attack. Subclasses store each constructor argument under its own name (see
    :meth:`settings`) and implement :meth:`run`."""

    #: short name written to dataset manifests
    name = "attack"
    #: constructor arguments added after corpora were built, each with the value that reproduces those corpora;
    #: recorded only when set otherwise, so that the earlier corpora still count as built with these settings
    recorded_unless: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        """The constructor arguments, for manifests and dataset cards."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        recorded = {n: getattr(self, n) for n in names
                    if n not in self.recorded_unless or getattr(self, n) != self.recorded_unless[n]}
        # Tuples as lists: a manifest stores JSON, and a rebuilt attack must compare equal to it.
        return {n: list(v) if isinstance(v, tuple) else v for n, v in recorded.items()}

    def __call__(
        self,
        victim: Victim,
        waveforms: torch.Tensor,
        lengths: torch.Tensor,
        targets: Sequence[str],
        seed: int = 0,
        **conditions: Any,
    ) -> AttackOutput:
        """Attack a batch.

        Args:
            victim: the model under attack (see :func:`lit_app.attacks.victims.load_victim`).
            waveforms: ``[batch, samples]`` clean clips in [-1, 1], zero-padded.
            lengths: valid samples of each clip.
            targets: the wanted output of each clip (class name or phrase).
            seed: seed of every random choice the attack makes.
            **conditions: per-example settings some attacks take (the noise control's ``snr_db``).
        """
        if waveforms.ndim != 2 or waveforms.shape[0] != len(targets) or lengths.shape != (len(targets),):
            raise ValueError(
                f"expected waveforms [batch, samples], lengths [batch] and one target per clip; got "
                f"{tuple(waveforms.shape)}, {tuple(lengths.shape)} and {len(targets)} targets"
            )
        device = victim.device
        # Inference tensors (made under torch.inference_mode, e.g. in Lightning's predict loop) cannot take
        # part in autograd; cloning outside inference mode gives ordinary tensors.
        with torch.inference_mode(False):
            clean = metrics.quantize(waveforms.detach().to(device, torch.float32).clone())
            lengths = lengths.detach().to(device, torch.long).clone()
            clean = clean * metrics.valid_mask(lengths, clean.shape[1])
            batch = self.prepare(victim, clean, lengths, [victim.normalise_target(t) for t in targets],
                                 torch.Generator(device=device).manual_seed(seed))
            with torch.enable_grad():
                adversarial = self.run(victim, batch, **conditions)
            return self.finish(victim, batch, adversarial)

    def prepare(
        self, victim: Victim, clean: torch.Tensor, lengths: torch.Tensor, targets: list[str], generator: torch.Generator
    ) -> AttackBatch:
        """The batch :meth:`run` starts from: targets encoded for the victim, and which clips can reach them."""
        encoded = victim.encode(targets)
        return AttackBatch(clean, lengths, targets, encoded, victim.feasible(lengths, encoded), generator)

    @abstractmethod
    def run(self, victim: Victim, batch: AttackBatch, **conditions: Any) -> torch.Tensor:
        """Return the adversarial clips ``[batch, samples]`` on the 16-bit grid, having advanced ``batch.queries``
        and ``batch.iterations`` for every clip."""

    @torch.no_grad()
    def finish(self, victim: Victim, batch: AttackBatch, adversarial: torch.Tensor) -> AttackOutput:
        """Judge every clip on its final 16-bit form and measure its distortion."""
        clean, lengths, targets, feasible = batch.clean, batch.lengths, batch.targets, batch.feasible
        queries, iterations = batch.queries, batch.iterations
        adversarial = metrics.quantize(adversarial) * metrics.valid_mask(lengths, adversarial.shape[1])
        predictions = judge(victim, adversarial, lengths)
        db_x = metrics.db_x(clean, adversarial, lengths).tolist()
        snr = metrics.snr_db(clean, adversarial, lengths).tolist()
        linf = metrics.linf_int16(clean, adversarial, lengths).long().tolist()
        results = [
            AttackResult(
                target=target,
                prediction=prediction,
                success=bool(ok) and prediction == target,
                queries=int(q),
                iterations=int(it),
                db_x=round(float(d), 3),
                snr_db=round(float(s), 3),
                linf=int(m),
                feasible=bool(ok),
            )
            for target, prediction, q, it, ok, d, s, m in zip(
                targets, predictions, queries.tolist(), iterations.tolist(), feasible.tolist(), db_x, snr, linf
            )
        ]
        return AttackOutput(adversarial.cpu(), results)


@torch.no_grad()
def judge(victim: Victim, clips: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """The victim's output for each clip as it will be read back: alone, at its own length.

    A recogniser's features near the end of a clip can depend on the padding that follows it in a batch, so
    clips of different lengths are judged one at a time; clips of one length are judged together.
    """
    if bool((lengths == lengths[0]).all()):
        return victim.predict(clips[:, : int(lengths[0])], lengths)
    return [victim.predict(clip[None, :length], lengths[i : i + 1])[0]
            for i, (clip, length) in enumerate(zip(clips, lengths.tolist()))]
