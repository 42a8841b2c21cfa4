"""Lightning strategies of the app."""

from strategies.dgc import DGCStrategy
from strategies.dgc import register as _register_dgc

_register_dgc()  # Trainer(strategy="dgc"); guarded, so importing twice is harmless

__all__ = ["DGCStrategy"]
