"""Adversarial attacks on the app's victims, behind one interface (:class:`~lit_app.attacks.base.Attack`).

- :class:`CarliniWagner`: white-box, targeted, shrinking L-infinity bound (CTC or classifier victims).
- :class:`PGD` / :class:`FGSM`: white-box, targeted, fixed L-infinity bound.
- :class:`PGDL2`: white-box, targeted, fixed L2 bound, every step run (as attack libraries do).
- :class:`DDN`: white-box, targeted, minimal L2 norm (decoupled direction and norm), for classifiers.
- :class:`GeneticAttack`: black-box (output probabilities only), targeted, for classifiers.
- :class:`SquareAttack`: black-box (output probabilities only), targeted random search in an L-infinity ball, for
  classifiers.
- :class:`HopSkipJump`: black-box decision-based (top label only), targeted, minimal L2 norm, for classifiers.
- :class:`NoiseControl`: random noise at a given SNR, the control for "is it just noise?".
"""

from lit_app.attacks.base import Attack, AttackBatch, AttackOutput, AttackResult
from lit_app.attacks.carlini_wagner import CarliniWagner
from lit_app.attacks.ddn import DDN
from lit_app.attacks.genetic import GeneticAttack
from lit_app.attacks.gradient import FGSM, PGD, PGDL2
from lit_app.attacks.hop_skip_jump import HopSkipJump
from lit_app.attacks.noise import NoiseControl
from lit_app.attacks.query import QueryAccessError, QueryOnlyView
from lit_app.attacks.square import SquareAttack
from lit_app.attacks.victims import ClassifierVictim, CTCVictim, Victim, checkpoint_sha256, load_victim

__all__ = [
    "Attack",
    "AttackBatch",
    "AttackOutput",
    "AttackResult",
    "CarliniWagner",
    "ClassifierVictim",
    "CTCVictim",
    "DDN",
    "FGSM",
    "GeneticAttack",
    "HopSkipJump",
    "NoiseControl",
    "PGD",
    "PGDL2",
    "QueryAccessError",
    "QueryOnlyView",
    "SquareAttack",
    "Victim",
    "checkpoint_sha256",
    "load_victim",
]
