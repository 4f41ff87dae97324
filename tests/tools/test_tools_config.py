"""The `tools:` section: the example loads, everything is off when absent, and each mistake is refused
with the file and the full key path."""

import copy
from pathlib import Path

import pytest
import yaml

from pivoice.settings import ConfigError, Section, load_yaml_mapping
from pivoice.tools.builtin import BUILTIN_NAMES
from pivoice.tools.config import read_tools
from pivoice.tools.registry import build_registry
from pivoice.tools.timers import TimerService
from pivoice.tools.config import CommandSpec, HttpSpec, ToolsConfig
from support.tools_fakes import MemoryVolume

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "pivoice.example.yaml"
LIGHT = {"name": "kitchen_light", "description": "Switch a light on.",
         "parameters": {"type": "object", "properties": {"entity_id": {"type": "string",
                                                                       "enum": ["light.kitchen", "light.hall"]}},
                        "required": ["entity_id"]},
         "http": {"method": "POST", "url": "https://homeassistant.local:8123/api/services/light/turn_on",
                  "body": {"entity_id": "{entity_id}"}, "bearer_token_credential": "ha-token"}}
RADIO = {"name": "play_radio", "description": "Play a station.",
         "parameters": {"type": "object", "properties": {"station": {"type": "integer", "minimum": 1}},
                        "required": ["station"]},
         "command": {"argv": ["/usr/bin/mpc", "play", "{station}"]}}


def read(data) -> ToolsConfig:
    return read_tools(Section(data, "pivoice.yaml", "tools"))


def refused(data) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        read(data)
    assert err.value.file == "pivoice.yaml"
    return err.value


def with_function(**changes) -> dict:
    """One function (the light by default) with dotted-path changes; None deletes the key."""
    tool = copy.deepcopy(changes.pop("base", LIGHT))
    for path, value in changes.items():
        node = tool
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return {"functions": [copy.deepcopy(RADIO), tool]}


def example_function_blocks() -> dict:
    """The commented-out `functions:` examples of the example file, uncommented."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("  # functions:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append(line[4:])
    return yaml.safe_load("\n".join(block))


def test_absent_section_turns_everything_off():
    cfg = read(None)
    assert cfg == ToolsConfig()
    assert not cfg.enabled
    assert len(build_registry(cfg)) == 0


def test_example_tools_section_loads_with_the_builtins_on():
    data = load_yaml_mapping(EXAMPLE)
    cfg = read_tools(Section(data["tools"], str(EXAMPLE), "tools"))
    assert cfg.timeout_s == 5.0 and cfg.enabled
    b = cfg.builtin
    assert (b.time, b.timezone, b.volume, b.end_conversation, b.timers, b.max_timers) == (True, None, True, True,
                                                                                          True, 10)
    assert cfg.functions == ()


def test_example_home_assistant_and_command_examples_are_valid():
    functions = example_function_blocks()["functions"]
    cfg = read({"functions": functions})
    light, radio = cfg.functions
    assert light.name == "kitchen_light"
    assert light.http == HttpSpec(method="POST", url="https://homeassistant.local:8123/api/services/light/turn_on",
                                  headers=(), body={"entity_id": "{entity_id}"}, bearer_token_file=None,
                                  bearer_token_credential="ha-token", timeout_s=5.0, max_response_bytes=16384,
                                  ca_file=None)
    assert light.parameters["properties"]["entity_id"]["enum"] == ["light.kitchen", "light.hall"]
    assert light.parameters["additionalProperties"] is False
    assert radio.command == CommandSpec(argv=("/usr/bin/mpc", "play", "{station}"), env=(("MPD_HOST", "localhost"),),
                                        cwd="/", timeout_s=5.0, max_output_bytes=4096)


def test_defaults_and_shorthand_switches():
    cfg = read({"timeout_s": 2, "builtin": {"time": True, "timers": True, "volume": False},
                "functions": [RADIO, LIGHT]})
    assert cfg.builtin.time and cfg.builtin.timers and cfg.builtin.max_timers == 10 and not cfg.builtin.volume
    assert cfg.functions[0].command.timeout_s == 2.0          # tools.timeout_s is the functions' default
    assert cfg.functions[0].command.max_output_bytes == 4096
    assert cfg.functions[1].http.max_response_bytes == 16384


@pytest.mark.parametrize("data, key_path, words", [
    ({"colour": 1}, "tools.colour", "unknown key"),
    ({"timeout_s": 61}, "tools.timeout_s", "<= 60"),
    ({"builtin": {"time": {"enabled": False, "zone": "UTC"}}}, "tools.builtin.time.zone", "unknown key"),
    ({"builtin": {"time": {"timezone": "Mars/Olympus"}}}, "tools.builtin.time.timezone", "unknown time zone"),
    ({"builtin": {"timers": {"max_timers": 0}}}, "tools.builtin.timers.max_timers", ">= 1"),
    ({"builtin": {"volume": "yes"}}, "tools.builtin.volume", "true or false"),
    ({"functions": {"a": 1}}, "tools.functions", "must be a list"),
    ({"functions": ["x"]}, "tools.functions[0]", "must be a mapping"),
])
def test_section_errors_name_the_key_path(data, key_path, words):
    err = refused(data)
    assert err.key_path == key_path
    assert words in err.reason


@pytest.mark.parametrize("changes, key_path, words", [
    ({"name": "get_time"}, "tools.functions[1].name", "built-in"),
    ({"name": "play_radio"}, "tools.functions[1].name", "already used"),
    ({"name": "has space"}, "tools.functions[1].name", "1-64 characters"),
    ({"name": "x" * 65}, "tools.functions[1].name", "1-64 characters"),
    ({"description": None}, "tools.functions[1].description", "required"),
    ({"colour": "red"}, "tools.functions[1].colour", "unknown key"),
    ({"command": {"argv": ["/bin/true"]}}, "tools.functions[1].http", "exactly one of command or http"),
    ({"http": None}, "tools.functions[1].command", "exactly one of command or http"),
    ({"parameters__properties__entity_id__format": "uri"},
     "tools.functions[1].parameters.properties.entity_id.format", "unsupported JSON Schema keyword"),
    ({"parameters__type": "array"}, "tools.functions[1].parameters.type", "must be object"),
    ({"http__url": "http://homeassistant.local:8123/api"}, "tools.functions[1].http.url", "https:// is required"),
    ({"http__url": "https://{host}/api"}, "tools.functions[1].http.url", "not a property"),
    ({"http__url": "https://{entity_id}.example/api"}, "tools.functions[1].http.url", "host or port"),
    ({"http__url": "https://user:pw@ha.example/api"}, "tools.functions[1].http.url", "credentials in the URL"),
    ({"http__url": "ftp://ha.example/"}, "tools.functions[1].http.url", "http:// or https://"),
    ({"http__url": "https://ha.example/{oops"}, "tools.functions[1].http.url", "stray '{'"),
    ({"http__method": "TRACE"}, "tools.functions[1].http.method", "must be one of"),
    ({"http__method": "GET"}, "tools.functions[1].http.body", "GET request has no body"),
    ({"http__headers": {"Authorization": "Bearer x"}}, "tools.functions[1].http.headers.Authorization",
     "keep tokens out of the config file"),
    ({"http__headers": {"X-A": "a\nb"}}, "tools.functions[1].http.headers.X-A", "one-line"),
    ({"http__bearer_token_file": "/etc/t"}, "tools.functions[1].http.bearer_token_credential", "not both"),
    ({"http__bearer_token_credential": "../t"}, "tools.functions[1].http.bearer_token_credential",
     "credential name"),
    ({"http__bearer_token_credential": None, "http__bearer_token_file": "token"},
     "tools.functions[1].http.bearer_token_file", "absolute path"),
    ({"http__max_response_bytes": 262145}, "tools.functions[1].http.max_response_bytes", "<= 262144"),
    ({"http__timeout_s": 0}, "tools.functions[1].http.timeout_s", ">= 0.1"),
    ({"http__body": {"entity_id": "{nope}"}}, "tools.functions[1].http.body", "not a property"),
])
def test_function_errors_name_the_key_path(changes, key_path, words):
    err = refused(with_function(**changes))
    assert err.key_path == key_path
    assert words in err.reason
    assert str(err).startswith(f"pivoice.yaml: {key_path}: ")


@pytest.mark.parametrize("changes, key_path, words", [
    ({"command__argv": "/usr/bin/mpc play {station}"}, "tools.functions[1].command.argv", "not a shell command"),
    ({"command__argv": []}, "tools.functions[1].command.argv", "non-empty list"),
    ({"command__argv": ["mpc", "play"]}, "tools.functions[1].command.argv[0]", "absolute path"),
    ({"command__argv": ["/usr/bin/{station}"]}, "tools.functions[1].command.argv[0]", "no placeholder"),
    ({"command__argv": ["/usr/bin/mpc", "play", "{channel}"]}, "tools.functions[1].command.argv[2]",
     "not a property"),
    ({"command__argv": ["/usr/bin/mpc", "{station"]}, "tools.functions[1].command.argv[1]", "stray '{'"),
    ({"parameters__required": [], "command__argv": ["/usr/bin/mpc", "play", "{station}"]},
     "tools.functions[1].command.argv[2]", "parameters.required"),
    ({"parameters__properties__station": {"type": "array"}}, "tools.functions[1].command.argv[2]",
     "used inside text"),
    ({"command__env": {"BAD-NAME": "x"}}, "tools.functions[1].command.env.BAD-NAME", "environment variable"),
    ({"command__env": {"N": 3}}, "tools.functions[1].command.env.N", "one-line string"),
    ({"command__cwd": "tmp"}, "tools.functions[1].command.cwd", "absolute path"),
    ({"command__timeout_s": 120}, "tools.functions[1].command.timeout_s", "<= 60"),
    ({"command__max_output_bytes": 65537}, "tools.functions[1].command.max_output_bytes", "<= 65536"),
    ({"command__shell": True}, "tools.functions[1].command.shell", "unknown key"),
])
def test_command_errors_name_the_key_path(changes, key_path, words):
    err = refused(with_function(base=dict(RADIO, name="radio2"), **changes))
    assert err.key_path == key_path
    assert words in err.reason


@pytest.mark.parametrize("url", ["http://127.0.0.1:8123/api", "http://127.3.4.5/x", "http://[::1]:80/x",
                                 "http://localhost/x", "http://LOCALHOST:1/x",
                                 "https://ha.example/{entity_id}?a={{b}}"])
def test_plain_http_is_allowed_on_loopback_only(url):
    cfg = read(with_function(http__url=url))
    assert cfg.functions[1].http.url == url


def test_typed_body_placeholders_may_be_any_type_but_inline_ones_must_be_scalar():
    params = {"type": "object", "required": ["ids", "level"], "properties": {
        "ids": {"type": "array", "items": {"type": "string"}}, "level": {"type": "integer"}}}
    ok = read(with_function(parameters=params, http__body={"entity_id": "{ids}", "brightness": "{level}",
                                                           "note": "level {level}"}))
    assert ok.functions[1].http.body["entity_id"] == "{ids}"
    err = refused(with_function(parameters=params, http__body={"note": "ids {ids}"}))
    assert err.key_path == "tools.functions[1].http.body" and "used inside text" in err.reason


def test_builtin_names_are_the_registry_names():
    cfg = read({"builtin": {"time": True, "volume": True, "end_conversation": True, "timers": True}})
    timers = TimerService(lambda t: None)
    try:
        registry = build_registry(cfg, volume=MemoryVolume(), timers=timers)
        assert registry.names() == BUILTIN_NAMES
    finally:
        timers.close()


def test_build_registry_needs_the_collaborators_of_enabled_builtins():
    with pytest.raises(ValueError, match="volume"):
        build_registry(read({"builtin": {"volume": True}}))
    with pytest.raises(ValueError, match="timer"):
        build_registry(read({"builtin": {"timers": True}}))
