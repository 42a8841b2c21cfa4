"""A query-only view of a classifier victim: output probabilities for input clips, and nothing else.

Black-box attacks receive this view instead of the model. It answers ``view(waveforms)`` with detached
class probabilities computed without autograd, counts every clip it is asked about, and refuses everything
a white-box attack would use: parameters, gradients, logits, the module itself. The model is kept in a
closure rather than an attribute, so no attribute of the view leads to it. This guards against accidental
white-box access in our own code; it is not a sandbox against deliberate introspection.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch

from lit_app.attacks.base import Attack, AttackBatch
from lit_app.attacks.victims import ClassifierVictim, Victim, answer_in_passes


class QueryAccessError(RuntimeError):
    """A black-box attack asked the query-only view for more than output probabilities."""


class QueryBudgetExceeded(RuntimeError):
    """More queries than the view's budget allows."""


class QueryOnlyView:
    """Probabilities ``[batch, classes]`` of a classifier victim for ``[batch, samples]`` waveforms.

    Args:
        victim: the classifier victim to hide.
        max_queries: total clips the view answers before raising :class:`QueryBudgetExceeded`; unlimited
            when ``None``.
    """

    __slots__ = ("_answer", "labels", "clip_samples", "device", "queries", "max_queries")

    def __init__(self, victim: ClassifierVictim, max_queries: int | None = None) -> None:
        module = victim.module

        def answer(waveforms: torch.Tensor) -> torch.Tensor:
            return answer_in_passes(module, waveforms).float().softmax(-1)

        self._answer = answer
        self.labels: tuple[str, ...] = tuple(victim.labels)
        self.clip_samples: int = victim.clip_samples
        self.device: torch.device = victim.device
        self.queries = 0
        self.max_queries = max_queries

    def __call__(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.requires_grad:
            raise QueryAccessError("the query-only view gives no gradients: pass inputs that do not require grad")
        if waveforms.ndim != 2:
            raise ValueError(f"expected [batch, samples] waveforms, got shape {tuple(waveforms.shape)}")
        count = waveforms.shape[0]
        if self.max_queries is not None and self.queries + count > self.max_queries:
            raise QueryBudgetExceeded(f"{self.queries} + {count} queries exceed the budget of {self.max_queries}")
        self.queries += count
        return self._answer(waveforms.to(self.device))

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise QueryAccessError("a black-box attack sees output probabilities only (call the view with waveforms)")

    parameters = named_parameters = state_dict = buffers = modules = logits = gradient = backward = _refuse

    def __getattr__(self, name: str) -> Any:
        # Reached only for names the view does not define: the module, its layers, forward, hooks...
        raise QueryAccessError(
            f"the query-only view has no {name!r}: a black-box attack sees output probabilities only"
        )

    def __reduce__(self) -> Any:
        raise QueryAccessError("the query-only view cannot be pickled (that would expose the model)")


class QueryAttack(Attack):
    """Base of the black-box attacks on a classifier: :meth:`search` sees the victim only through a
    :class:`QueryOnlyView`, with the targets as class indices in the view's label order."""

    def run(self, victim: Victim, batch: AttackBatch, **conditions: Any) -> torch.Tensor:
        if not isinstance(victim, ClassifierVictim):
            raise TypeError(f"{type(self).__name__} is a black-box attack on classifiers: it needs a classifier "
                            f"victim (class probabilities), not a {type(victim).__name__}")
        with torch.no_grad():
            adversarial, batch.queries, batch.iterations = self.search(
                QueryOnlyView(victim), batch.clean, batch.lengths, batch.encoded[0], batch.generator
            )
        return adversarial

    @abstractmethod
    def search(self, view: QueryOnlyView, clean: torch.Tensor, lengths: torch.Tensor, target_index: torch.Tensor,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attack ``clean`` (``[batch, samples]`` on the 16-bit grid, zero-padded) through ``view`` only.

        Returns:
            The adversarial clips (float, on the 16-bit grid), and the queries and iterations spent per clip.
        """
