"""`command` tools run real programs: argv only, a clean environment, a timeout that kills the whole
process group, an output cap, and cancellation."""

import os
import sys
import threading
import time
from pathlib import Path

from pivoice.tools.base import CallContext
from pivoice.tools.command import run_command
from pivoice.tools.specs import CommandSpec

PYTHON = sys.executable


def spec(*argv, env=(), cwd="/", timeout_s=5.0, max_output_bytes=4096) -> CommandSpec:
    return CommandSpec(argv=tuple(argv), env=tuple(env), cwd=cwd, timeout_s=timeout_s,
                       max_output_bytes=max_output_bytes)


def run(s: CommandSpec, arguments=None, ctx=None) -> dict:
    return run_command(s, arguments or {}, ctx or CallContext()).payload


def gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie waiting for init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout_s: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.02)
    return gone(pid)


def test_echo_with_a_placeholder():
    assert run(spec("/bin/echo", "hello {name}"), {"name": "kitchen"}) == {
        "ok": True, "exit_code": 0, "output": "hello kitchen\n", "truncated": False}


def test_an_argument_never_adds_or_splits_argv_elements():
    nasty = "a b; rm -rf / $(id) `id` 'q' \"d\" *"
    out = run(spec("/usr/bin/printf", "<%s>\\n", "{text}", "[{n}]"), {"text": nasty, "n": 2.0})
    assert out["output"] == f"<{nasty}>\n<[2]>\n"   # two elements in, two printed: nothing was split


def test_a_nul_character_in_an_argument_is_refused():
    out = run(spec("/bin/echo", "{text}"), {"text": "a\0b"})
    assert out["error"]["type"] == "invalid_arguments" and "NUL" in out["error"]["message"]


def test_environment_is_clean_plus_the_configured_env():
    assert "HOME" in os.environ or "PATH" in os.environ   # the test runner's own environment is not empty
    out = run(spec("/usr/bin/env", env=[("MPD_HOST", "localhost")]))
    lines = sorted(out["output"].splitlines())
    assert lines == ["LANG=C.UTF-8", "MPD_HOST=localhost", "PATH=/usr/local/bin:/usr/bin:/bin"]


def test_cwd_defaults_to_root_and_stdin_is_dev_null(tmp_path):
    assert run(spec("/bin/pwd"))["output"] == "/\n"
    assert run(spec("/bin/pwd", cwd=str(tmp_path)))["output"] == f"{tmp_path}\n"
    started = time.monotonic()
    assert run(spec("/bin/cat", timeout_s=3))["output"] == ""   # EOF at once: stdin is not a terminal/pipe
    assert time.monotonic() - started < 1.0


def test_non_zero_exit_reports_status_and_stderr():
    out = run(spec("/bin/sh", "-c", "echo partial; echo 'no such station' >&2; exit 3"))
    assert out == {"ok": False, "error": {"type": "exit_status", "message": "/bin/sh exited with status 3",
                                          "exit_code": 3, "stderr": "no such station\n", "output": "partial\n"}}


def test_stderr_is_capped_at_one_kib_and_still_drained():
    out = run(spec(PYTHON, "-c", "import sys; sys.stderr.write('e' * 200000); sys.exit(1)"))
    assert out["error"]["type"] == "exit_status"
    assert out["error"]["stderr"] == "e" * 1024


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    out = run(spec("/bin/sh", "-c", f"/bin/sleep 30 & echo $! > {pidfile}; wait", timeout_s=0.5))
    elapsed_s = time.monotonic() - started
    assert out["ok"] is False and out["error"]["type"] == "timeout"
    assert "did not finish within 0.5 s" in out["error"]["message"]
    assert 0.5 <= elapsed_s < 1.5
    assert wait_gone(int(pidfile.read_text()))   # the background grandchild went with the group


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    started = time.monotonic()
    out = run(spec("/bin/sh", "-c", "trap '' TERM; /bin/sleep 30", timeout_s=0.3))
    elapsed_s = time.monotonic() - started
    assert out["error"]["type"] == "timeout"
    assert 0.75 <= elapsed_s < 1.8   # 0.3 s timeout + 0.5 s SIGTERM grace, then SIGKILL


def test_output_cap_stops_the_program_and_marks_truncation():
    started = time.monotonic()
    out = run(spec(PYTHON, "-c", "import sys, time; sys.stdout.write('x' * 100000); sys.stdout.flush(); "
                                 "time.sleep(30)", max_output_bytes=4096))
    assert out == {"ok": True, "exit_code": None, "output": "x" * 4096, "truncated": True}
    assert time.monotonic() - started < 2.0


def test_output_cap_does_not_leave_half_a_utf8_character():
    out = run(spec(PYTHON, "-c", "print('é' * 1000)", max_output_bytes=7))
    assert out["output"] == "ééé" and out["truncated"] is True


def test_a_missing_program_is_a_clear_failure():
    out = run(spec("/nonexistent/radio"))
    assert out == {"ok": False, "error": {"type": "failed",
                                          "message": "cannot run /nonexistent/radio: No such file or directory"}}


def test_cancel_kills_a_running_command_at_once(tmp_path):
    pidfile = tmp_path / "pid"
    ctx = CallContext()
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        run(spec("/bin/sh", "-c", f"echo $$ > {pidfile}; exec /bin/sleep 30", timeout_s=20), ctx=ctx)))
    worker.start()
    deadline = time.monotonic() + 5
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    ctx.cancel()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.monotonic() - started < 1.0
    assert result["error"]["type"] == "cancelled"
    assert wait_gone(int(pidfile.read_text()))


def test_a_command_cancelled_before_it_starts_is_stopped_at_once():
    ctx = CallContext()
    ctx.cancel()
    started = time.monotonic()
    assert run(spec("/bin/sleep", "30"), ctx=ctx)["error"]["type"] == "cancelled"
    assert time.monotonic() - started < 1.0
