"""A small JSON Schema subset: enough to check a tool's arguments before anything runs.

Ours rather than the `jsonschema` package: a few dozen keywords cover what a tool's parameters need, and
a keyword we do not implement must be refused at config load (`check_schema`), never silently skipped,
or an argument the user thought was constrained would pass unchecked. Unlike JSON Schema, an object's
`additionalProperties` defaults to false: the model may not invent argument names.

Pure functions; called on the main thread (config load) and on tool worker threads (validate).
"""

from __future__ import annotations

import math
import re
from typing import Any

from pivoice.jsonvalue import json_equal  # noqa: F401  (part of this module's API)

TYPES = ("object", "string", "number", "integer", "boolean", "array", "null")
_IGNORED = ("description", "title", "default")
_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
KEYWORDS = frozenset(("type", "properties", "required", "additionalProperties", "enum", "const", "pattern",
                      "items") + _NUMBER_BOUNDS + _COUNTS + _IGNORED)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SchemaError(ValueError):
    """A schema uses a keyword we do not implement or gives a keyword a wrong value.

    `where` is the dotted path inside the schema (e.g. `properties.minutes.minimum`)."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}" if where else reason)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def check_schema(schema: Any, where: str = "") -> None:
    """Raise SchemaError for anything outside the supported subset; return None if the schema is usable."""
    if not isinstance(schema, dict):
        raise SchemaError(where, "must be a mapping (a JSON Schema object)")
    for key in schema:
        if key not in KEYWORDS:
            raise SchemaError(_join(where, str(key)), "unsupported JSON Schema keyword (supported: "
                              + ", ".join(sorted(KEYWORDS)) + ")")
    if "type" in schema:
        kinds = schema["type"]
        names = kinds if isinstance(kinds, list) else [kinds]
        if not names or any(n not in TYPES for n in names) or len(set(names)) != len(names):
            raise SchemaError(_join(where, "type"), f"must be one of {', '.join(TYPES)} or a list of them")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise SchemaError(_join(where, "properties"), "must be a mapping of property name to schema")
    for name, sub in props.items():
        check_schema(sub, _join(where, f"properties.{name}"))
    if "required" in schema:
        req = schema["required"]
        if not isinstance(req, list) or not all(isinstance(r, str) for r in req) or len(set(req)) != len(req):
            raise SchemaError(_join(where, "required"), "must be a list of distinct property names")
        missing = [r for r in req if r not in props]
        if missing:
            raise SchemaError(_join(where, "required"), f"names {missing[0]!r}, which is not in properties")
    if "additionalProperties" in schema and not isinstance(schema["additionalProperties"], bool):
        raise SchemaError(_join(where, "additionalProperties"), "must be true or false (a schema is not supported)")
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        raise SchemaError(_join(where, "enum"), "must be a non-empty list")
    for key in _NUMBER_BOUNDS:
        if key in schema and not _is_number(schema[key]):
            raise SchemaError(_join(where, key), "must be a number")
    for key in _COUNTS:
        value = schema.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SchemaError(_join(where, key), "must be a non-negative integer")
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as exc:
            raise SchemaError(_join(where, "pattern"), f"not a valid regular expression: {exc}") from None
    if "items" in schema:
        check_schema(schema["items"], _join(where, "items"))
    for key in ("title", "description"):
        if key in schema and not isinstance(schema[key], str):
            raise SchemaError(_join(where, key), "must be a string")


def close_objects(schema: dict) -> dict:
    """A copy with `additionalProperties: false` written into every object schema that leaves it out,
    so the declaration the model sees says what `validate` enforces."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: close_objects(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = close_objects(out["items"])
    kinds = out.get("type")
    is_object = kinds == "object" or (isinstance(kinds, list) and "object" in kinds) or "properties" in out
    if is_object and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _has_type(value: Any, kind: str) -> bool:
    actual = _type_of(value)
    if kind == "number":
        return actual in ("integer", "number")
    if kind == "integer":   # JSON Schema: 5.0 is an integer
        return actual == "integer" or (actual == "number" and float(value).is_integer())
    return actual == kind


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if _IDENTIFIER.fullmatch(name) else f"{path}[{name!r}]"


def validate(schema: dict, value: Any, path: str = "$") -> list[str]:
    """Messages naming each problem by its JSON path (`$.minutes: must be >= 1`); empty when valid."""
    errors: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_has_type(value, k) for k in kinds):
            return [f"{path}: must be {' or '.join(kinds)}, got {_type_of(value)}"]
    if "enum" in schema and not any(json_equal(value, e) for e in schema["enum"]):
        allowed = ", ".join(_short(e) for e in schema["enum"])
        errors.append(f"{path}: must be one of {allowed}; got {_short(value)}")
    if "const" in schema and not json_equal(value, schema["const"]):
        errors.append(f"{path}: must be {_short(schema['const'])}")
    if _is_number(value):
        errors += _check_number(schema, value, path)
    elif isinstance(value, str):
        errors += _check_string(schema, value, path)
    elif isinstance(value, list):
        errors += _check_array(schema, value, path)
    elif isinstance(value, dict):
        errors += _check_object(schema, value, path)
    return errors


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_number(schema: dict, value: float, path: str) -> list[str]:
    out = []
    if "minimum" in schema and value < schema["minimum"]:
        out.append(f"{path}: must be >= {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        out.append(f"{path}: must be <= {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        out.append(f"{path}: must be > {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        out.append(f"{path}: must be < {schema['exclusiveMaximum']}")
    return out


def _check_string(schema: dict, value: str, path: str) -> list[str]:
    out = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        out.append(f"{path}: must be at least {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        out.append(f"{path}: must be at most {schema['maxLength']} characters")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{path}: must match the pattern {schema['pattern']!r}")
    return out


def _check_array(schema: dict, value: list, path: str) -> list[str]:
    out = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        out.append(f"{path}: must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        out.append(f"{path}: must have at most {schema['maxItems']} items")
    if "items" in schema:
        for i, item in enumerate(value):
            out += validate(schema["items"], item, f"{path}[{i}]")
    return out


def _check_object(schema: dict, value: dict, path: str) -> list[str]:
    out = []
    props = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            out.append(f"{path}: missing required property {name!r}")
    if not schema.get("additionalProperties", False):
        for name in value:
            if name not in props:
                allowed = ", ".join(props) or "none"
                out.append(f"{_child(path, name)}: unknown property (allowed: {allowed})")
    for name, sub in props.items():
        if name in value:
            out += validate(sub, value[name], _child(path, name))
    return out
