"""Strict reading of YAML config files into typed values.

Every config file in pivoice (daemon, token backend) goes through `Section`, so
all of them reject unknown keys and name the file and the full key path in
errors, e.g. ``pivoice.yaml: audio.input.frame_ms: must be one of 10, 20, 30``.

Called from the main thread at start-up only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

import yaml

_MISSING = object()


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range."""

    def __init__(self, file: str, key_path: str, reason: str):
        self.file = file
        self.key_path = key_path
        self.reason = reason
        where = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{where}: {reason}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping.

    PyYAML keeps the last value silently, so a second `device:` further down a
    file would quietly win over the one the user is looking at."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":   # `<<: *anchor` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:   # an unhashable key: let PyYAML report it as it does
                continue
            if first is not None:
                raise _DuplicateKey(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first, again):
        self.key, self.first, self.again = key, first, again


def _key_path(loader_doc: yaml.Node | None, mark) -> str:
    """The dotted key path of the mapping that holds `mark`, for a duplicate-key error."""
    path: list[str] = []
    node = loader_doc
    while isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if value_node.start_mark.index <= mark.index < value_node.end_mark.index:
                path.append(str(key_node.value))
                node = value_node
                break
        else:
            break
    return ".".join(path)


def load_yaml_mapping(path: str | Path) -> dict:
    """Parse a YAML file whose top level must be a mapping."""
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(name, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(name, "", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} "
                                    f"(offset {exc.start}); save the file as UTF-8") from None
    loader = _StrictLoader(text)
    try:
        doc = loader.get_single_node()
        data = loader.construct_document(doc) if doc is not None else None
    except _DuplicateKey as dup:
        parent = _key_path(doc, dup.again)
        where = f"{parent}.{dup.key}" if parent else str(dup.key)
        raise ConfigError(name, where, f"given twice (lines {dup.first.line + 1} and {dup.again.line + 1}); "
                                       "keep one") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(name, "", f"invalid YAML: {where}{getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(name, "", "top level must be a mapping of keys")
    return data


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


class Section:
    """One mapping in a config file; typed getters consume keys, `done()` rejects leftovers."""

    def __init__(self, data: Any, file: str, path: str = ""):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(file, path, f"must be a mapping, got {_type_name(data)}")
        self._data = dict(data)
        self._seen: set[str] = set()
        self.file = file
        self.path = path

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.file, self.key_path(key), reason)

    def has(self, key: str) -> bool:
        return key in self._data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._seen.add(key)
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def section(self, key: str, required: bool = False) -> "Section":
        value = self.raw(key, _MISSING if required else None)
        return Section(value, self.file, self.key_path(key))

    def str(self, key: str, default: Any = _MISSING, *, choices: Iterable[str] | None = None,
            nullable: bool = False, non_empty: bool = True) -> Any:
        value = self.raw(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_type_name(value)}")
        if non_empty and not value.strip():
            raise self.error(key, "must not be empty")
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise self.error(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_type_name(value)}")
        return value

    def int(self, key: str, default: Any = _MISSING, *, min: int | None = None, max: int | None = None,
            choices: Iterable[int] | None = None, nullable: bool = False) -> Any:
        value = self.raw(key, default)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {_type_name(value)}")
        self._check_range(key, value, min, max)
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                raise self.error(key, f"must be one of {', '.join(map(str, allowed))}; got {value}")
        return value

    def float(self, key: str, default: Any = _MISSING, *, min: float | None = None,
              max: float | None = None, nullable: bool = False) -> Any:
        value = self.raw(key, default)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.error(key, f"must be a number, got {_type_name(value)}")
        self._check_range(key, value, min, max)
        return float(value)

    def str_list(self, key: str, default: Any = _MISSING) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(value)

    def _check_range(self, key: str, value: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and value < lo:
            raise self.error(key, f"must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise self.error(key, f"must be <= {hi}, got {value}")

    def done(self) -> None:
        """Reject keys nobody asked for (typos must not be silently ignored)."""
        unknown = sorted(set(map(str, self._data)) - self._seen)
        if unknown:
            raise ConfigError(self.file, self.key_path(unknown[0]),
                              "unknown key" + (f" (also unknown: {', '.join(unknown[1:])})" if unknown[1:] else ""))
