"""Lightning callbacks of the app."""

from callbacks.dgc_monitor import DGCMonitor
from callbacks.predictions import PredictionsFile
from callbacks.results_file import ResultsFile

__all__ = ["DGCMonitor", "PredictionsFile", "ResultsFile"]
