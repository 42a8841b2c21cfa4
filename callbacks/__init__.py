"""Lightning callbacks of the app."""

from callbacks.dgc_monitor import DGCMonitor
from callbacks.results_file import ResultsFile

__all__ = ["DGCMonitor", "ResultsFile"]
