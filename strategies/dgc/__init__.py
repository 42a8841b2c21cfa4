"""Deep Gradient Compression (Lin et al., ICLR 2018) as a Lightning strategy.

- :mod:`~strategies.dgc.strategy`: :class:`DGCStrategy`, the user-facing ``DDPStrategy``;
- :mod:`~strategies.dgc.hook`: the DDP communication hook and its state;
- :mod:`~strategies.dgc.compressor`: the algorithm on tensors (momentum correction, masking, clipping);
- :mod:`~strategies.dgc.selection`: batched exact top-k;
- :mod:`~strategies.dgc.wire`: message layout and byte counts;
- :mod:`~strategies.dgc.schedule`: the warm-up density schedule;
- :mod:`~strategies.dgc.baselines`: DDP with the stock compression hooks on CPU too, for comparisons;
- :mod:`~strategies.dgc.shutdown`: the process group destroyed at exit (gloo too), so finished runs exit cleanly.
"""

from strategies.dgc.baselines import CommHookDDPStrategy
from strategies.dgc.compressor import CompressorSettings, DGCCompressor
from strategies.dgc.hook import DGCHookState, StepStats, dgc_hook
from strategies.dgc.schedule import PAPER_WARMUP, DensitySchedule
from strategies.dgc.strategy import DGCStrategy

__all__ = [
    "PAPER_WARMUP",
    "CommHookDDPStrategy",
    "CompressorSettings",
    "DGCCompressor",
    "DGCHookState",
    "DGCStrategy",
    "DensitySchedule",
    "StepStats",
    "dgc_hook",
    "register",
]


def register() -> None:
    """Make ``Trainer(strategy="dgc")`` (and ``"dgc_spawn"``) available; safe to call more than once."""
    from pytorch_lightning.strategies import StrategyRegistry

    DGCStrategy.register_strategies(StrategyRegistry)
