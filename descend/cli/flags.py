"""Command-line flags generated from TrainConfig's fields: name, type, default and help.

A setting is declared once, in `descend.config`; ``descend train`` and ``descend optim compare``
both get their flags from here, so neither repeats a default or a help line. Flags that are not
given stay out of the parsed namespace (``argparse.SUPPRESS``), so a config file or a command's
own defaults can fill them, and then `TrainConfig.from_dict` converts everything alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Collection, Mapping
from typing import Any

from descend.config import TrainConfig, convert, field_types, flag_name
from descend.config import text as help_text
from descend.errors import ConfigError


def add_config_flags(
    parser: argparse.ArgumentParser,
    *,
    exclude: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """One flag per TrainConfig field not in ``exclude``, grouped as the config groups them.

    ``defaults`` are a command's own defaults (shown in the help instead of TrainConfig's); the
    command applies them itself with `config_values`.
    """
    defaults = defaults or {}
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        meta = f.metadata
        group = groups.get(meta["group"]) or groups.setdefault(
            meta["group"], parser.add_argument_group(meta["group"]))
        default = defaults.get(f.name, _default(f))
        text = (help_text(meta["help"]) or "") + _default_text(default,
                                                               help_text(meta["default_text"]))
        options: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                   "help": text.replace("%", "%%")}
        kind = field_types()[f.name]
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif f.name == "model_args":
            options.update(type=_model_arg, action="append", metavar=meta["metavar"])
        else:
            options["type"] = _parser_for(f.name)
            if meta["metavar"]:
                options["metavar"] = meta["metavar"]
        group.add_argument(flag_name(f.name), **options)


def config_values(args: argparse.Namespace, defaults: Mapping[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The TrainConfig settings given as flags (over ``defaults``), ready for ``from_dict``."""
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    if "model_args" in given:
        given["model_args"] = dict(given["model_args"])
    return {**(defaults or {}), **given}


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _default_text(default: Any, none_text: str | None) -> str:
    if default is None:
        return f" (default: {none_text})" if none_text else ""
    if isinstance(default, bool):
        return f" (default: {'on' if default else 'off'})"
    if isinstance(default, dict):
        return "" if not default else f" (default: {json.dumps(default)})"
    if isinstance(default, list):
        default = ",".join(str(v) for v in default)
    return f" (default: {default})"


def _parser_for(name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return convert(name, text, "flag")
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"flag: {flag_name(name)} ")) \
                from None

    parse.__name__ = name
    return parse


def _model_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``, the value read as JSON where it is JSON (``widths=[32,64]``), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
