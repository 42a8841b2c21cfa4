"""The command line of a job function: its typed arguments as options, its docstring as ``--help``.

Every job of the app that is not a Trainer call (building adversarial sets, the detector grid, noise flooding,
the adaptive attacker, scoring) is a function driven by YAML, run as a ``lit-app`` subcommand::

    lit-app <job> -c job.yaml [-c overlay.yaml] [--option value] [--print_config] [--help]

Arguments typed as a data module (``LitAppDataModule`` or a subclass) are parsed as LightningCLI parses its
``data:`` section, by :func:`add_data_arguments`: the one parser of data sections that every command shares.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any, get_type_hints

from lit_app.base import LitAppDataModule


def add_data_arguments(
    parser: Any, key: str = "data", required: bool = True, base: type[LitAppDataModule] = LitAppDataModule
) -> None:
    """A ``class_path``/``init_args`` data-module section under ``key``, declared as LightningCLI declares its own.

    Only a subclass argument makes jsonargparse resolve the files a data config names (``train_sets:
    [sets/x.yaml]``) relative to that config, as ``lit-app fit`` does.
    """
    parser.add_subclass_arguments(base, key, required=required)


def data_parameters(function: Callable[..., Any]) -> dict[str, type[LitAppDataModule]]:
    """The parameters of ``function`` typed as a data module, with their types."""
    hints = get_type_hints(function)
    return {name: hints[name] for name in inspect.signature(function).parameters
            if isinstance(hints.get(name), type) and issubclass(hints[name], LitAppDataModule)}


def function_parser(function: Callable[..., Any], prog: str) -> Any:
    """A jsonargparse parser with ``-c`` YAML files (applied in order) and one option per argument of ``function``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").splitlines()[0])
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="job YAML (several apply in order)")
    data = data_parameters(function)
    parameters = inspect.signature(function).parameters
    for name, base in data.items():
        add_data_arguments(parser, name, parameters[name].default is inspect.Parameter.empty, base)
    parser.add_function_arguments(function, skip=set(data))
    return parser


def run_command(function: Callable[..., Any], prog: str, args: list[str] | None = None) -> Any:
    """Parse ``args`` for ``function`` (``class_path`` arguments instantiated) and call it; W&B offline by default."""
    os.environ.setdefault("WANDB_MODE", "offline")
    parser = function_parser(function, prog)
    settings = parser.instantiate(parser.parse_args(args)).as_dict()
    settings.pop("config", None)
    return function(**settings)
