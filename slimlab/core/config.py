"""Typed, frozen recipe configs: YAML holds values only, ``key=value`` overrides on top.

``load_config(MyConfig, "recipe.yaml", ["lr=3e-4", "bits=4"])`` returns a frozen dataclass. An unknown key
or a value of the wrong type is an error that names the key (with a "did you mean" hint), never a silent
default.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from slimlab.core.errors import SlimlabError

ConfigT = TypeVar("ConfigT")


def load_config(config_class: type[ConfigT], yaml_path: str | Path | None = None,
                overrides: Sequence[str] = (), **values: Any) -> ConfigT:
    """Build ``config_class`` from keyword values, then a YAML file, then ``key=value`` overrides (last wins)."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{config_class!r} is not a dataclass")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    merged: dict[str, Any] = {}
    source_of: dict[str, str] = {}

    def put(key: str, value: Any, source: str) -> None:
        if key not in fields:
            raise SlimlabError(f"{source}: unknown key '{key}' for {config_class.__name__}{_did_you_mean(key, fields)}")
        merged[key] = value
        source_of[key] = source

    for key, value in values.items():
        if value is not None:
            put(key, value, "argument")
    if yaml_path is not None:
        for key, value in _read_yaml(Path(yaml_path)).items():
            put(str(key), value, str(yaml_path))
    for item in overrides:
        if "=" not in item:
            raise SlimlabError(f"override '{item}' is not of the form key=value")
        key, text = item.split("=", 1)
        put(key.strip(), yaml.safe_load(text) if text.strip() else "", f"override '{item}'")

    checked = {key: coerce(value, hints[key], f"{source_of[key]}: '{key}'") for key, value in merged.items()}
    missing = [name for name, field in fields.items() if name not in checked and _has_no_default(field)]
    if missing:
        raise SlimlabError(f"{config_class.__name__}: missing required value(s): {', '.join(missing)}")
    try:
        return config_class(**checked)
    except (TypeError, ValueError) as error:
        raise SlimlabError(f"{config_class.__name__}: {error}") from error


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config (tuples as lists), for writing the resolved config of a run."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()}


def check_same_settings(path: str | Path, stored: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume ``path`` when the run identity it stored differs from this run's, naming every key that
    differs (with both values), so a resumed run never mixes two settings silently."""
    changed = [f"{key}: {stored.get(key, '(absent)')!r} there, {current.get(key, '(absent)')!r} now"
               for key in sorted(set(stored) | set(current)) if stored.get(key) != current.get(key)]
    if changed:
        raise SlimlabError(f"{path}: was written by a run with different settings ({'; '.join(changed)}); use another "
                           "out_dir or resume=false")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a type annotation, converting only where it is lossless (int -> float, list -> tuple)."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        errors = []
        for option in arguments:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except SlimlabError as error:
                errors.append(str(error))
        raise SlimlabError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is typing.Literal:
        if value in arguments:
            return value
        raise SlimlabError(f"{where} must be one of {', '.join(map(repr, arguments))}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and origin is tuple and arguments:
            value = [value] * (len(arguments) if arguments[-1] is not Ellipsis else 1)
        if not isinstance(value, (list, tuple)):
            raise SlimlabError(f"{where} must be a list, got {value!r}")
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            if len(value) != len(arguments):
                raise SlimlabError(f"{where} must have {len(arguments)} items, got {len(value)}")
            items = [coerce(item, kind, where) for item, kind in zip(value, arguments)]
        else:
            kind = arguments[0] if arguments else Any
            items = [coerce(item, kind, where) for item in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SlimlabError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise SlimlabError(f"{where} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise SlimlabError(f"{where} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "5e-5" as a string
            except ValueError:
                pass
        raise SlimlabError(f"{where} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise SlimlabError(f"{where} must be a string, got {value!r}")
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise SlimlabError(f"{path}: config file not found") from error
    except yaml.YAMLError as error:
        raise SlimlabError(f"{path}: not valid YAML ({error})") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SlimlabError(f"{path}: expected a mapping of key: value at the top level")
    return data


def _did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(sorted(known))})"


def _has_no_default(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
