"""LightningModules: the victims and the detector."""

from lit_app.models.kws import KWSModule

__all__ = ["KWSModule"]
