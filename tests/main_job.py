"""The main job's recipe (recipes/main_job/) as the tests see it: its folder and its report module."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "main_job"


def load_report() -> ModuleType:
    """``recipes/main_job/report.py`` imported as a module (recipes are scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location("main_job_report", RECIPE / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
