"""The command line of an experiment function: its typed arguments as options, its docstring as ``--help``.

Every experiment module (grid, noise flooding, adaptive attacker) is a function driven by YAML::

    python -m lit_app.experiments.<name> -c experiment.yaml [-c overlay.yaml] [--option value]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def function_parser(function: Callable[..., Any], prog: str) -> Any:
    """A jsonargparse parser with ``-c`` YAML files (applied in order) and one option per argument of ``function``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").splitlines()[0])
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="experiment YAML (several apply in order)")
    parser.add_function_arguments(function)
    return parser


def run_command(function: Callable[..., Any], prog: str, args: list[str] | None = None) -> Any:
    """Parse ``args`` for ``function`` (``class_path`` arguments instantiated) and call it; W&B offline by default."""
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = function_parser(function, prog)
    settings = parser.instantiate(parser.parse_args(args)).as_dict()
    settings.pop("config", None)
    return function(**settings)
