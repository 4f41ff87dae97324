"""The runner: calls run concurrently off the caller's thread, each answered exactly once (result,
error object, timeout or cancel), logged by name/duration/outcome without values; the declarations
validate against the SDK's function tool type."""

import json
import logging
import queue
import threading
import time
from pathlib import Path

import pytest
from openai.types.realtime import RealtimeFunctionTool

from pivoice.settings import Section
from pivoice.tools.config import read_tools
from pivoice.tools.registry import ToolRegistry, build_registry
from pivoice.tools.runner import ToolRunner
from pivoice.tools.timers import TimerService
from pivoice.tools.base import Tool, success
from support.tools_fakes import MemoryVolume

NO_ARGS = {"type": "object", "properties": {}, "additionalProperties": False}
TIMER_ARGS = {"type": "object", "additionalProperties": False, "required": ["minutes"],
              "properties": {"minutes": {"type": "integer", "minimum": 1}, "pin": {"type": "string"}}}


def thread_name() -> str:
    return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()


def slow_tool(name="slow", sleep_s=0.5, timeout_s=5.0, record=None) -> Tool:
    def run(arguments, ctx):
        started = time.monotonic()
        time.sleep(sleep_s)
        if record is not None:
            record.append((started, time.monotonic(), thread_name()))
        return success(slept_s=sleep_s)
    return Tool(name, "Sleeps.", NO_ARGS, timeout_s, run)


def stuck_tool(release: threading.Event, timeout_s=0.2) -> Tool:
    return Tool("stuck", "Blocks until the test ends.", NO_ARGS, timeout_s, lambda a, ctx: release.wait() or success())


@pytest.fixture
def release():
    """Set when the test ends, so stuck tools' threads end with it."""
    event = threading.Event()
    yield event
    event.set()


class Rig:
    def __init__(self, tools, max_workers=4):
        self.results: queue.Queue = queue.Queue()
        self.runner = ToolRunner(ToolRegistry(tools), self.results.put, max_workers=max_workers)

    def result(self, timeout_s=5.0):
        return self.results.get(timeout=timeout_s)

    def output(self, timeout_s=5.0) -> dict:
        return json.loads(self.result(timeout_s).output)


@pytest.fixture
def rig_factory():
    rigs = []

    def make(tools, **kw):
        rig = Rig(tools, **kw)
        rigs.append(rig)
        return rig
    yield make
    for rig in rigs:
        rig.runner.close()


def test_two_slow_calls_overlap_and_start_returns_at_once(rig_factory):
    record = []
    rig = rig_factory([slow_tool(record=record)])
    started = time.monotonic()
    rig.runner.start("call_1", "slow", "{}")
    rig.runner.start("call_2", "slow", "{}")
    assert time.monotonic() - started < 0.05
    results = [rig.result(), rig.result()]
    elapsed_s = time.monotonic() - started
    assert sorted(r.call_id for r in results) == ["call_1", "call_2"] and all(r.ok for r in results)
    assert elapsed_s < 0.9                                   # 2 x 0.5 s ran side by side
    (s1, e1, n1), (s2, e2, n2) = record
    assert s1 < e2 and s2 < e1                               # the two runs overlapped
    assert {n1, n2} == {"pv-tool-1", "pv-tool-2"}
    assert all(0.5 <= r.duration_s < 0.8 for r in results)


def test_max_workers_queues_the_rest(rig_factory):
    rig = rig_factory([slow_tool(sleep_s=0.3)], max_workers=1)
    started = time.monotonic()
    for i in range(3):
        rig.runner.start(f"call_{i}", "slow", "{}")
    assert [rig.result().call_id for _ in range(3)] == ["call_0", "call_1", "call_2"]
    assert time.monotonic() - started >= 0.9


def test_cancel_kills_a_command_and_posts_cancelled_once(rig_factory, tmp_path):
    pidfile = tmp_path / "pid"
    data = {"functions": [{"name": "wait", "description": "Waits.", "command": {
        "argv": ["/bin/sh", "-c", f"echo $$ > {pidfile}; exec /bin/sleep 30"], "timeout_s": 20}}]}
    rig = rig_factory(list(build_registry(read_tools(Section(data, "pivoice.yaml", "tools")))))
    rig.runner.start("call_1", "wait", "{}")
    deadline = time.monotonic() + 5
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = int(pidfile.read_text())
    assert rig.runner.cancel("call_1") is True
    result = rig.result(0.5)
    assert (result.call_id, result.ok, result.error_type) == ("call_1", False, "cancelled")
    assert json.loads(result.output)["error"]["type"] == "cancelled"
    deadline = time.monotonic() + 2
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    assert rig.runner.cancel("call_1") is False
    with pytest.raises(queue.Empty):
        rig.results.get(timeout=0.5)                          # the worker's own late answer is dropped
    assert rig.runner.pending() == 0


def test_cancel_all_answers_running_and_queued_calls(rig_factory):
    rig = rig_factory([slow_tool(sleep_s=0.5)], max_workers=1)
    rig.runner.start("a", "slow", "{}")
    rig.runner.start("b", "slow", "{}")                        # queued behind a
    assert rig.runner.cancel_all() == 2
    got = sorted((r.call_id, json.loads(r.output)["error"]["type"]) for r in (rig.result(0.2), rig.result(0.2)))
    assert got == [("a", "cancelled"), ("b", "cancelled")]


def test_unknown_function_is_refused_with_the_available_names(rig_factory):
    rig = rig_factory([slow_tool(sleep_s=0)])
    rig.runner.start("call_1", "launch_rockets", "{}")
    out = rig.output()
    assert out == {"ok": False, "error": {"type": "unknown_function",
                                          "message": "there is no function named 'launch_rockets'; available: slow"}}


@pytest.mark.parametrize("arguments, message", [
    ('{"minutes": ', "arguments are not valid JSON: Expecting value: line 1 column 13 (char 12)"),
    ("[1]", "$: must be a JSON object of named arguments"),
    ('{"minutes": 0}', "$.minutes: must be >= 1"),
    ('{"minutes": 5, "when": "now"}', "$.when: unknown property (allowed: minutes, pin)"),
    ("", "$: missing required property 'minutes'"),
])
def test_invalid_arguments_never_reach_the_tool(rig_factory, arguments, message):
    ran = []
    rig = rig_factory([Tool("set_timer", "t", TIMER_ARGS, 5.0, lambda a, ctx: ran.append(a) or success())])
    rig.runner.start("call_1", "set_timer", arguments)
    result = rig.result()
    assert json.loads(result.output) == {"ok": False, "error": {"type": "invalid_arguments", "message": message}}
    assert ran == [] and result.ok is False


def test_arguments_nested_too_deep_are_answered_at_once(rig_factory):
    rig = rig_factory([slow_tool(sleep_s=0)])
    rig.runner.start("call_1", "slow", "[" * 100000 + "]" * 100000)
    result = rig.result(0.9)                                  # not the watchdog's timeout, 1 s later
    assert (result.ok, result.error_type) == (False, "failed")
    assert json.loads(result.output)["error"]["message"] == "slow could not be run (RecursionError)"


def test_a_stuck_builtin_is_answered_timeout(rig_factory, release):
    rig = rig_factory([stuck_tool(release, timeout_s=0.2)])
    started = time.monotonic()
    rig.runner.start("call_1", "stuck", "{}")
    out = rig.output(3.0)
    assert out == {"ok": False, "error": {"type": "timeout", "message": "stuck gave no answer within 0.2 s"}}
    assert 1.2 <= time.monotonic() - started < 1.6           # timeout + GRACE_S (1 s)


def test_a_stuck_call_frees_its_worker_slot(rig_factory, release):
    rig = rig_factory([stuck_tool(release, timeout_s=0.1), slow_tool(sleep_s=0)], max_workers=1)
    rig.runner.start("call_1", "stuck", "{}")
    rig.runner.start("call_2", "slow", "{}")
    assert [rig.result(3).call_id, rig.result(3).call_id] == ["call_1", "call_2"]


def test_an_exception_becomes_a_failed_result_without_a_traceback(rig_factory, caplog):
    def broken(arguments, ctx):
        raise KeyError("internal detail")
    rig = rig_factory([Tool("broken", "b", NO_ARGS, 5.0, broken)])
    rig.runner.start("call_1", "broken", "{}")
    result = rig.result()
    assert json.loads(result.output) == {"ok": False,
                                         "error": {"type": "failed", "message": "broken failed (KeyError)"}}
    assert "Traceback" not in result.output and "internal detail" not in result.output
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "pivoice.tools.runner"]
    assert warnings and warnings[0].exc_info is not None    # the operator gets the traceback, in the log


def test_the_log_line_has_name_duration_and_outcome_and_no_values(rig_factory, caplog):
    caplog.set_level(logging.INFO, logger="pivoice.tools.runner")
    rig = rig_factory([Tool("set_timer", "t", TIMER_ARGS, 5.0, lambda a, ctx: success())])
    rig.runner.start("call_1", "set_timer", json.dumps({"minutes": 5, "pin": "hunter2-secret"}))
    rig.result()
    rig.runner.start("call_2", "set_timer", json.dumps({"minutes": 0, "pin": "hunter2-secret"}))
    rig.result()
    lines = [r.getMessage() for r in caplog.records if r.name == "pivoice.tools.runner"]
    assert len(lines) == 2
    assert lines[0].startswith("tool set_timer: ok in 0.")
    assert lines[0].endswith(" s (call call_1; arguments: minutes, pin)")
    assert lines[1].startswith("tool set_timer: error invalid_arguments in 0.")
    assert all("hunter2" not in line for line in lines)
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "pivoice.tools.runner")


def test_effects_reach_the_result_and_repeats_are_ignored(rig_factory):
    cfg = read_tools(Section({"builtin": {"end_conversation": True}}, "pivoice.yaml", "tools"))
    rig = rig_factory(list(build_registry(cfg)))
    rig.runner.start("call_1", "end_conversation", "{}")
    result = rig.result()
    assert (result.ok, result.effect, result.error_type, json.loads(result.output)) == (
        True, "end_conversation", None, {"ok": True})
    rig.runner.start("call_1", "end_conversation", "{}")      # seen again in response.done: one answer
    with pytest.raises(queue.Empty):
        rig.results.get(timeout=0.3)


def test_after_close_a_start_is_answered_cancelled(rig_factory):
    rig = rig_factory([slow_tool(sleep_s=0)])
    rig.runner.close()
    rig.runner.start("late", "slow", "{}")
    assert rig.output(1.0)["error"]["type"] == "cancelled"


def test_declarations_validate_against_the_sdk_with_no_extra_fields():
    data = {"builtin": {"time": True, "volume": True, "end_conversation": True, "timers": True},
            "functions": [
                {"name": "kitchen_light", "description": "Switch a light on.",
                 "parameters": {"type": "object", "required": ["entity_id"], "properties": {
                     "entity_id": {"type": "string", "enum": ["light.kitchen", "light.hall"]}}},
                 "http": {"method": "POST", "url": "https://homeassistant.local:8123/api/services/light/turn_on",
                          "body": {"entity_id": "{entity_id}"}, "bearer_token_credential": "ha-token"}},
                {"name": "play_radio", "description": "Play a station.", "parameters": {
                    "type": "object", "required": ["station"], "properties": {"station": {"type": "integer"}}},
                 "command": {"argv": ["/usr/bin/mpc", "play", "{station}"]}}]}
    timers = TimerService(lambda t: None)
    try:
        registry = build_registry(read_tools(Section(data, "pivoice.yaml", "tools")), volume=MemoryVolume(),
                                  timers=timers)
        declarations = ToolRunner(registry, lambda r: None).declarations()
    finally:
        timers.close()
    assert [d["name"] for d in declarations][-2:] == ["kitchen_light", "play_radio"] and len(declarations) == 9
    for declaration in declarations:
        model = RealtimeFunctionTool.model_validate(declaration, strict=True)
        assert not model.model_extra
        assert model.model_dump(exclude_unset=True) == declaration
        json.dumps(declaration)   # plain JSON all the way down


def test_close_waits_until_a_stubborn_command_is_killed(rig_factory, tmp_path):
    pidfile = tmp_path / "pid"
    data = {"functions": [{"name": "stubborn", "description": "Ignores SIGTERM.", "command": {
        "argv": ["/bin/sh", "-c", f"trap '' TERM; echo $$ > {pidfile}; /bin/sleep 30"], "timeout_s": 20}}]}
    rig = rig_factory(list(build_registry(read_tools(Section(data, "pivoice.yaml", "tools")))))
    rig.runner.start("call_1", "stubborn", "{}")
    deadline = time.monotonic() + 5
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = int(pidfile.read_text())
    started = time.monotonic()
    rig.runner.close()
    assert 0.4 <= time.monotonic() - started < 1.5              # SIGTERM ignored: SIGKILL after the 0.5 s grace
    assert json.loads(rig.result(0.1).output)["error"]["type"] == "cancelled"
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
