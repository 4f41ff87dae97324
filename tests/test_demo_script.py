"""scripts/lib/demo.py (behind `scripts/demo`), run as a user runs it: `--tools` shows the model calling the
daemon's get_time tool and the spoken answer built from its result."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


def run_demo(tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lib" / "demo.py"), "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_demo_tools_prints_the_call_its_result_and_the_spoken_time(tmp_path):
    result = run_demo(tmp_path, "--tools")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert '"What time is it?"' in out
    lines = out.splitlines()
    called = next(i for i, line in enumerate(lines) if line.rstrip().endswith("the model called get_time"))
    results = next(i for i, line in enumerate(lines) if "tool results sent to the model (get_time)" in line)
    said = next(i for i, line in enumerate(lines) if "assistant: It is " in line)
    played = next(i for i, line in enumerate(lines) if re.search(r"ms +reply played \(\d+ ms of audio\)", line))
    assert called < results < said < played, out
    # the spoken time is the tool's output: today's local date, an ISO time with its offset
    spoken = re.search(r"assistant: It is (\S+), a (\w+)\.", lines[said])
    assert spoken, lines[said]
    when = datetime.fromisoformat(spoken.group(1))
    assert abs((datetime.now(when.tzinfo) - when).total_seconds()) < 120 and spoken.group(2) == when.strftime("%A")
    assert "tool exchange: get_time ran" in out
    # the dev server was really scripted, and the daemon's config enabled the time built-in
    assert "get_time" in (tmp_path / "script.yaml").read_text()
    config = yaml.safe_load((tmp_path / "pivoice.yaml").read_text())
    assert config["tools"]["builtin"]["time"]["enabled"] is True


def test_demo_tools_refuses_parrot(tmp_path):
    result = run_demo(tmp_path, "--tools", "--parrot")
    assert result.returncode == 2 and "--tools and --parrot do not go together" in result.stderr


def test_demo_prints_the_earcons_and_the_status_light_in_the_timeline(tmp_path):
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()

    def first(pattern: str, after: int = 0) -> int:
        return next(i for i, line in enumerate(lines) if i >= after and re.search(r"ms +" + pattern, line))
    pressed = first(r"pressed \(ctl\)")
    listening = first(r"earcon: listening")
    light_listening = first(r"light: listening")
    stop = first(r"server heard speech stop")
    thinking = first(r"earcon: thinking")
    light_thinking = first(r"light: thinking")
    speaking = first(r"light: speaking")
    played = first(r"reply played")
    ended = first(r"conversation ended")
    earcon_ended = first(r"earcon: ended", ended)
    light_idle = first(r"light: idle", ended)
    assert pressed < listening < stop <= thinking < speaking < played < ended < earcon_ended, result.stdout
    assert pressed < light_listening < light_thinking < speaking < played < light_idle, result.stdout
    assert "earcons played: listening, thinking, ended" in result.stdout
    assert re.search(r"status light: +listening -> thinking -> speaking -> listening -> idle", result.stdout)
    config = yaml.safe_load((tmp_path / "pivoice.yaml").read_text())
    assert config["feedback"]["light"] == {"kind": "led", "pin": "GPIO12"}
