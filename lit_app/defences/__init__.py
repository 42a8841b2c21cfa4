"""Detectors that need no adversarial training data, only the victim (see :mod:`lit_app.defences.noise_flooding`
and :mod:`lit_app.defences.over_confidence`)."""

from lit_app.defences.noise_flooding import NoiseFlooding
from lit_app.defences.over_confidence import OverConfidence

__all__ = ["NoiseFlooding", "OverConfidence"]
