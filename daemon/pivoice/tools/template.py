"""`{name}` placeholders in command argv elements, URLs and HTTP bodies.

`{{` and `}}` are literal braces; any other brace is an error at config load, so a typo cannot turn into
a literal `{station}` passed to a program. Substitution happens inside one string: an argument can
never add or split argv elements.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
_EXACT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> list[str]:
    """The argument names used in `text`; ValueError for a stray or malformed brace."""
    names = []
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise ValueError(f"stray {token!r} at offset {match.start()} (write {{name}} for an argument, "
                             "{{ or }} for a literal brace)")
        names.append(match.group(1))
    return names


def exact_placeholder(text: str) -> str | None:
    """The argument name when `text` is exactly one placeholder (`"{entity_id}"`), else None."""
    match = _EXACT.fullmatch(text)
    return match.group(1) if match else None


def format_arg(value: Any) -> str:
    """An argument as text: JSON spellings for booleans, no `.0` on whole numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fill(text: str, arguments: Mapping[str, Any], quote: Callable[[str], str] = lambda s: s) -> str:
    """`text` with each placeholder replaced by quote(format_arg(argument))."""
    def one(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return quote(format_arg(arguments[match.group(1)]))
    return _TOKEN.sub(one, text)


def fill_json(template: Any, arguments: Mapping[str, Any]) -> Any:
    """A JSON body template filled in: a string that is exactly `"{name}"` becomes the argument's typed
    value; other strings get text substitution; mapping keys are left as written."""
    if isinstance(template, str):
        name = exact_placeholder(template)
        return arguments[name] if name is not None else fill(template, arguments)
    if isinstance(template, list):
        return [fill_json(item, arguments) for item in template]
    if isinstance(template, dict):
        return {key: fill_json(value, arguments) for key, value in template.items()}
    return template


def json_placeholders(template: Any) -> tuple[list[str], list[str]]:
    """(names used as whole typed values, names used inside text) in a JSON body template."""
    exact: list[str] = []
    inline: list[str] = []
    if isinstance(template, str):
        name = exact_placeholder(template)
        if name is not None:
            exact.append(name)
        else:
            inline += placeholders(template)
    elif isinstance(template, list):
        for item in template:
            e, i = json_placeholders(item)
            exact += e
            inline += i
    elif isinstance(template, dict):
        for value in template.values():
            e, i = json_placeholders(value)
            exact += e
            inline += i
    return exact, inline
