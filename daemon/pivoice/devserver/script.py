"""`--script FILE`: scripted model turns for the dev server (JSON or YAML), loaded and checked once.

Format (JSON is YAML, so one loader reads both)::

    turns:
      - say: "plain spoken reply"
      - calls: [{name: get_time, arguments: {}}]            # one response with 1+ function calls
        say_before: "Let me check."                       # optional message before the calls
        then_say: "It is {output.time}."                  # the follow-up after the outputs
      - mcp: {server_label: home, name: turn_on, arguments: {entity: lamp}, output: "lamp is on"}
        then_say: "The lamp is on."                       # or `fail: {type: tool_execution_error, message}`
        then_say_denied: "I won't do that then."
    mcp_servers:                                          # what mcp_list_tools reports per label
      home: [{name: turn_on, input_schema: {type: object}, description: "..."}]

`arguments` may be an object (sent as JSON) or a string (sent verbatim, e.g. malformed JSON on
purpose). Placeholders in the `then_say*` texts: `{output}`, `{output.KEY}` (nested keys with more
dots), `{outputs}`, `{error}`, `{name}`. Every problem is reported as `ScriptError` naming the file, the turn
index and the key. Pure functions and immutable data; safe from any thread.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DEFAULT_DENIED_TEXT = "I won't do that then."
DEFAULT_FAILED_TEXT = "The {name} tool failed: {error}"
MCP_ERROR_TYPES = {"tool_execution_error": False, "protocol_error": True, "http_error": True}  # type -> needs code
_PLACEHOLDER = re.compile(r"\{(outputs|error|name|output(?:\.[A-Za-z0-9_\-]+)*)\}")


class ScriptError(ValueError):
    pass


@dataclass(frozen=True)
class Call:
    name: str
    arguments: str  # the JSON text the model "generates"


@dataclass(frozen=True)
class McpCall:
    server_label: str
    name: str
    arguments: str
    output: str | None
    error: dict | None  # {type, message[, code]} when the call fails


@dataclass(frozen=True)
class Turn:
    index: int
    say: str | None = None
    say_before: str | None = None
    calls: tuple[Call, ...] = ()
    mcp: McpCall | None = None
    then_say: str | None = None
    then_say_denied: str = DEFAULT_DENIED_TEXT
    then_say_failed: str = DEFAULT_FAILED_TEXT

    def describe(self) -> str:
        if self.calls:
            return "calls " + ", ".join(c.name for c in self.calls)
        if self.mcp:
            return f"mcp {self.mcp.server_label}.{self.mcp.name}"
        return "say"


@dataclass(frozen=True)
class Script:
    turns: tuple[Turn, ...] = ()
    mcp_servers: dict = field(default_factory=dict)  # label -> list of tool dicts (wire shape)


def load(path: Path) -> Script:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read the script: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path}: not valid JSON or YAML: {exc}") from None
    return parse(data, str(path))


def parse(data: object, where: str = "script") -> Script:
    top = _mapping(data, where, {"turns", "mcp_servers"})
    turns = top.get("turns", [])
    if not isinstance(turns, list):
        raise ScriptError(f"{where}: turns: must be a list of turns")
    servers = _mcp_servers(top.get("mcp_servers") or {}, f"{where}: mcp_servers")
    return Script(tuple(_turn(t, i, f"{where}: turns[{i}]") for i, t in enumerate(turns)), servers)


def _mapping(value: object, where: str, allowed: set[str]) -> dict:
    if not isinstance(value, dict):
        raise ScriptError(f"{where}: must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ScriptError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScriptError(f"{where}: must be a non-empty string")
    return value


def _arguments(value: object, where: str) -> str:
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value  # verbatim, so a script can send malformed JSON on purpose
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    raise ScriptError(f"{where}: must be an object or a JSON string, got {type(value).__name__}")


def _turn(raw: object, index: int, where: str) -> Turn:
    turn = _mapping(raw, where, {"say", "calls", "say_before", "then_say", "mcp", "then_say_denied",
                                 "then_say_failed"})
    kinds = [k for k in ("say", "calls", "mcp") if k in turn]
    if len(kinds) != 1:
        raise ScriptError(f"{where}: needs exactly one of 'say', 'calls' or 'mcp' (got {kinds or 'none'})")
    texts = {k: _text(turn[k], f"{where}.{k}") for k in
             ("say", "say_before", "then_say", "then_say_denied", "then_say_failed") if k in turn}
    if "say" in turn:
        extra = sorted(set(turn) - {"say"})
        if extra:
            raise ScriptError(f"{where}.{extra[0]}: only allowed with 'calls' or 'mcp'")
        return Turn(index, say=texts["say"])
    if "calls" in turn:
        if "then_say_denied" in turn or "then_say_failed" in turn:
            raise ScriptError(f"{where}: then_say_denied/then_say_failed are only for 'mcp' turns")
        calls = turn["calls"]
        if not isinstance(calls, list) or not calls:
            raise ScriptError(f"{where}.calls: must be a non-empty list of {{name, arguments}}")
        parsed = tuple(_call(c, f"{where}.calls[{i}]") for i, c in enumerate(calls))
        return Turn(index, say_before=texts.get("say_before"), calls=parsed, then_say=texts.get("then_say"))
    return Turn(index, say_before=texts.get("say_before"), mcp=_mcp(turn["mcp"], f"{where}.mcp"),
                then_say=texts.get("then_say"),
                then_say_denied=texts.get("then_say_denied", DEFAULT_DENIED_TEXT),
                then_say_failed=texts.get("then_say_failed", DEFAULT_FAILED_TEXT))


def _call(raw: object, where: str) -> Call:
    call = _mapping(raw, where, {"name", "arguments"})
    if "name" not in call:
        raise ScriptError(f"{where}: missing key 'name'")
    return Call(_text(call["name"], f"{where}.name"), _arguments(call.get("arguments"), f"{where}.arguments"))


def _mcp(raw: object, where: str) -> McpCall:
    mcp = _mapping(raw, where, {"server_label", "name", "arguments", "output", "fail"})
    for key in ("server_label", "name"):
        if key not in mcp:
            raise ScriptError(f"{where}: missing key {key!r}")
    if ("output" in mcp) == ("fail" in mcp):
        raise ScriptError(f"{where}: needs exactly one of 'output' or 'fail'")
    output = mcp.get("output")
    if output is not None and not isinstance(output, str):
        output = json.dumps(output, separators=(",", ":"))
    return McpCall(_text(mcp["server_label"], f"{where}.server_label"), _text(mcp["name"], f"{where}.name"),
                   _arguments(mcp.get("arguments"), f"{where}.arguments"), output,
                   _fail(mcp["fail"], f"{where}.fail") if "fail" in mcp else None)


def _fail(raw: object, where: str) -> dict:
    fail = _mapping(raw, where, {"type", "message", "code"})
    kind = fail.get("type", "tool_execution_error")
    if kind not in MCP_ERROR_TYPES:
        raise ScriptError(f"{where}.type: must be one of {', '.join(MCP_ERROR_TYPES)}, got {kind!r}")
    error = {"type": kind, "message": _text(fail.get("message"), f"{where}.message")}
    if MCP_ERROR_TYPES[kind]:
        code = fail.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise ScriptError(f"{where}.code: an integer is required for {kind}")
        error["code"] = code
    elif "code" in fail:
        raise ScriptError(f"{where}.code: not allowed for tool_execution_error")
    return error


def _mcp_servers(raw: object, where: str) -> dict:
    if not isinstance(raw, dict):
        raise ScriptError(f"{where}: must be a mapping of server_label -> list of tools")
    servers = {}
    for label, tools in raw.items():
        if isinstance(tools, dict) and set(tools) == {"tools"}:
            tools = tools["tools"]
        if not isinstance(tools, list):
            raise ScriptError(f"{where}.{label}: must be a list of {{name, input_schema, description}}")
        servers[str(label)] = [_tool(t, f"{where}.{label}[{i}]") for i, t in enumerate(tools)]
    return servers


def _tool(raw: object, where: str) -> dict:
    tool = _mapping(raw, where, {"name", "input_schema", "description", "annotations"})
    if "name" not in tool:
        raise ScriptError(f"{where}: missing key 'name'")
    schema = tool.get("input_schema", {"type": "object", "properties": {}})
    if not isinstance(schema, dict):
        raise ScriptError(f"{where}.input_schema: must be a JSON schema object")
    if "description" in tool and not isinstance(tool["description"], str):
        raise ScriptError(f"{where}.description: must be a string")
    out = {"name": _text(tool["name"], f"{where}.name"), "input_schema": schema,
           "description": tool.get("description", "")}
    if tool.get("annotations") is not None:
        out["annotations"] = tool["annotations"]
    return out


def fill(template: str, outputs: list[str], error: str | None = None, name: str = "") -> str:
    """Fill placeholders from what the client actually sent; absent values say so, never invented."""
    def one(match: re.Match) -> str:
        key = match.group(1)
        if key == "outputs":
            return "; ".join(outputs) if outputs else "[no output]"
        if key == "error":
            return error or "[no error]"
        if key == "name":
            return name
        if not outputs:
            return "[no output]"
        if key == "output":
            return outputs[0]
        value: object
        try:
            value = json.loads(outputs[0])
        except ValueError:
            return f"[no {key}]"
        for part in key.split(".")[1:]:
            if not isinstance(value, dict) or part not in value:
                return f"[no {key}]"
            value = value[part]
        return value if isinstance(value, str) else json.dumps(value)
    return _PLACEHOLDER.sub(one, template)
