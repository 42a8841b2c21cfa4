"""Lightning callbacks of the app."""

from callbacks.results_file import ResultsFile

__all__ = ["ResultsFile"]
