"""Detectors that need no adversarial training data, only the victim (see :mod:`lit_app.defences.noise_flooding`)."""

from lit_app.defences.noise_flooding import NoiseFlooding

__all__ = ["NoiseFlooding"]
