"""One function tool's config (`tools.functions[i]`): its name, schema, and `command` or `http` spec.

Everything a call could get wrong because of the config is refused here, naming the key path: a shell
string for argv, a relative program path, a placeholder in a URL's host, plain http off loopback, a
placeholder naming an optional or non-scalar argument, a schema keyword we do not check.

Main thread, at config load.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pivoice.settings import Section
from pivoice.loopback import is_loopback
from pivoice.tools import schema, template

NAME_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_TIMEOUT_S = 60.0
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_SCALARS = ("string", "number", "integer", "boolean")
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class CommandSpec:
    argv: tuple[str, ...]                # argv[0] absolute, fixed; {name} placeholders in the others
    env: tuple[tuple[str, str], ...]     # added to the clean environment
    cwd: str
    timeout_s: float
    max_output_bytes: int


@dataclass(frozen=True)
class HttpSpec:
    method: str
    url: str                             # template; placeholders only after the host, URL-quoted
    headers: tuple[tuple[str, str], ...]
    body: Any                            # JSON template or None
    bearer_token_file: str | None        # may hold ${CREDENTIALS_DIRECTORY}; read at call time
    bearer_token_credential: str | None  # = $CREDENTIALS_DIRECTORY/<name>
    timeout_s: float
    max_response_bytes: int
    ca_file: str | None


@dataclass(frozen=True)
class FunctionToolConfig:
    name: str
    description: str
    parameters: dict                     # checked schema, objects closed (additionalProperties: false)
    command: CommandSpec | None = None
    http: HttpSpec | None = None


def read_function(sec: Section, default_timeout_s: float) -> FunctionToolConfig:
    name = sec.str("name")
    if not NAME_PATTERN.fullmatch(name):
        raise sec.error("name", "must be 1-64 characters from a-z, A-Z, 0-9, _ and -")
    description = sec.str("description")
    params = sec.raw("parameters", _EMPTY_PARAMETERS)
    try:
        schema.check_schema(params)
    except schema.SchemaError as exc:
        raise sec.error("parameters" + (f".{exc.where}" if exc.where else ""), exc.reason) from None
    if params.get("type") != "object":
        raise sec.error("parameters.type", "must be object (a function's arguments are a JSON object)")
    params = schema.close_objects(params)
    kinds = [k for k in ("command", "http") if sec.has(k)]
    if len(kinds) != 1:
        raise sec.error("command" if not kinds else "http", "give exactly one of command or http")
    if kinds == ["command"]:
        spec = _read_command(sec.section("command", required=True), params, default_timeout_s)
        sec.done()
        return FunctionToolConfig(name, description, params, command=spec)
    spec = _read_http(sec.section("http", required=True), params, default_timeout_s)
    sec.done()
    return FunctionToolConfig(name, description, params, http=spec)


def _check_placeholders(sec: Section, key: str, names: list[str], params: dict, scalar: bool = True) -> None:
    props, required = params.get("properties", {}), params.get("required", [])
    for name in names:
        if name not in props:
            raise sec.error(key, f"{{{name}}} is not a property in parameters")
        if name not in required:
            raise sec.error(key, f"{{{name}}} must be listed in parameters.required (it is always filled in)")
        kinds = props[name].get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if scalar and not all(k in _SCALARS for k in kinds):
            raise sec.error(key, f"{{{name}}} is used inside text, so parameters.properties.{name}.type must "
                                 f"be one of {', '.join(_SCALARS)}")


def _placeholders(sec: Section, key: str, text: str) -> list[str]:
    try:
        return template.placeholders(text)
    except ValueError as exc:
        raise sec.error(key, str(exc)) from None


def _read_command(sec: Section, params: dict, default_timeout_s: float) -> CommandSpec:
    argv = sec.raw("argv")
    if isinstance(argv, str):
        raise sec.error("argv", "must be a list of strings, not a shell command line "
                                "(e.g. [/usr/bin/mpc, play, \"{station}\"]); no shell is ever used")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise sec.error("argv", "must be a non-empty list of strings")
    if not os.path.isabs(argv[0]) or "{" in argv[0] or "}" in argv[0]:
        raise sec.error("argv[0]", f"must be the program's absolute path with no placeholder; got {argv[0]!r}")
    for i, arg in enumerate(argv[1:], 1):
        _check_placeholders(sec, f"argv[{i}]", _placeholders(sec, f"argv[{i}]", arg), params)
    env = _read_str_map(sec, "env", _ENV_NAME, "an environment variable name")
    cwd = sec.str("cwd", "/")
    if not os.path.isabs(cwd):
        raise sec.error("cwd", "must be an absolute path")
    spec = CommandSpec(argv=tuple(argv), env=env, cwd=cwd,
                       timeout_s=sec.float("timeout_s", default_timeout_s, min=0.1, max=MAX_TIMEOUT_S),
                       max_output_bytes=sec.int("max_output_bytes", 4096, min=1, max=65536))
    sec.done()
    return spec


def _read_str_map(sec: Section, key: str, name_re: re.Pattern, what: str) -> tuple[tuple[str, str], ...]:
    raw = sec.raw(key, None) or {}
    if not isinstance(raw, dict):
        raise sec.error(key, "must be a mapping of names to strings")
    for name, value in raw.items():
        if not isinstance(name, str) or not name_re.fullmatch(name):
            raise sec.error(f"{key}.{name}", f"not a valid {what}")
        if not isinstance(value, str) or "\n" in value or "\r" in value or "\0" in value:
            raise sec.error(f"{key}.{name}", "must be a one-line string")
    return tuple(raw.items())


def _read_url(sec: Section, params: dict) -> str:
    url = sec.str("url")
    _check_placeholders(sec, "url", _placeholders(sec, "url", url), params)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise sec.error("url", f"must be an http:// or https:// URL with a host; got {url!r}")
    if "{" in parts.netloc or "}" in parts.netloc:
        raise sec.error("url", "placeholders may not be in the host or port (the destination is fixed)")
    if parts.username is not None or parts.password is not None:
        raise sec.error("url", "credentials in the URL are refused; use bearer_token_file or "
                               "bearer_token_credential")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise sec.error("url", f"https:// is required for {parts.hostname!r} (plain http only on loopback: "
                               "127.0.0.0/8, ::1, localhost)")
    return url


def _read_http(sec: Section, params: dict, default_timeout_s: float) -> HttpSpec:
    method = sec.str("method", "GET", choices=METHODS)
    url = _read_url(sec, params)
    headers = _read_str_map(sec, "headers", _HEADER_NAME, "HTTP header name")
    if any(name.lower() == "authorization" for name, _ in headers):
        raise sec.error("headers.Authorization", "keep tokens out of the config file: use bearer_token_file "
                                                 "or bearer_token_credential")
    body = sec.raw("body", None)
    if body is not None:
        if method == "GET":
            raise sec.error("body", "a GET request has no body; use POST, PUT or PATCH")
        try:
            exact, inline = template.json_placeholders(body)
        except ValueError as exc:
            raise sec.error("body", str(exc)) from None
        _check_placeholders(sec, "body", exact, params, scalar=False)
        _check_placeholders(sec, "body", inline, params)
    token_file = sec.str("bearer_token_file", None, nullable=True)
    credential = sec.str("bearer_token_credential", None, nullable=True)
    if token_file is not None and credential is not None:
        raise sec.error("bearer_token_credential", "give bearer_token_file or bearer_token_credential, not both")
    if token_file is not None and not token_file.startswith(("/", "${CREDENTIALS_DIRECTORY}")):
        raise sec.error("bearer_token_file", "must be an absolute path (may start with ${CREDENTIALS_DIRECTORY})")
    if credential is not None and not _CREDENTIAL_NAME.fullmatch(credential):
        raise sec.error("bearer_token_credential", "must be a systemd credential name (no '/')")
    spec = HttpSpec(method=method, url=url, headers=headers, body=body, bearer_token_file=token_file,
                    bearer_token_credential=credential,
                    timeout_s=sec.float("timeout_s", default_timeout_s, min=0.1, max=MAX_TIMEOUT_S),
                    max_response_bytes=sec.int("max_response_bytes", 16384, min=1, max=262144),
                    ca_file=sec.str("ca_file", None, nullable=True))
    sec.done()
    return spec
