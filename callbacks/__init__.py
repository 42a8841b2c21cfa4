"""Lightning callbacks of the app."""

from callbacks.dgc_monitor import DGCMonitor
from callbacks.predictions import PredictionsFile
from callbacks.results_file import ResultsFile
from callbacks.run_checkpoint import RunCheckpoint

__all__ = ["DGCMonitor", "PredictionsFile", "ResultsFile", "RunCheckpoint"]
