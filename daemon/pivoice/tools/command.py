"""`command` tools: run a program from an argv template, never through a shell.

The child gets a clean environment, stdin from /dev/null and its own session (process group), so a
timeout, an output over the cap or a cancel kills it and everything it started: SIGTERM to the group,
SIGKILL 0.5 s later. The group id stays ours until we reap the leader, so we never reap it before the
group has been signalled.

`run_command` is called on a tool worker thread; the cancel hook runs on the cancelling thread and only
writes one byte to a pipe the worker is waiting on.
"""

from __future__ import annotations

import codecs
import os
import select
import selectors
import signal
import subprocess
import threading
import time

from pivoice.tools import template
from pivoice.tools.base import CallContext, Outcome, failure, success
from pivoice.tools.specs import CommandSpec

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"
KILL_GRACE_S = 0.5
STDERR_CAP_BYTES = 1024
_READ_BYTES = 65536


def build_argv(spec: CommandSpec, arguments: dict) -> list[str]:
    """The argv for one call: each element filled in on its own."""
    return [spec.argv[0]] + [template.fill(a, arguments) for a in spec.argv[1:]]


def clean_env(spec: CommandSpec) -> dict[str, str]:
    return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **dict(spec.env)}


def run_command(spec: CommandSpec, arguments: dict, ctx: CallContext) -> Outcome:
    argv = build_argv(spec, arguments)
    program = argv[0]
    if any("\0" in arg for arg in argv):
        return failure("invalid_arguments", "an argument holds a NUL character, which no program argument can carry")
    wake_r, wake_w = os.pipe()
    wake_lock = threading.Lock()
    wake_open = [True]

    def wake() -> None:
        with wake_lock:
            if wake_open[0]:
                os.write(wake_w, b"x")
    try:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=spec.cwd, env=clean_env(spec),
                                    start_new_session=True, close_fds=True)
        except OSError as exc:
            return failure("failed", f"cannot run {program}: {exc.strerror or exc}")
        ctx.on_cancel(wake)
        with proc:
            return _supervise(proc, spec, program, wake_r, ctx)
    finally:
        with wake_lock:
            wake_open[0] = False
            os.close(wake_w)
        os.close(wake_r)


def _supervise(proc: subprocess.Popen, spec: CommandSpec, program: str, wake_r: int,
               ctx: CallContext) -> Outcome:
    deadline = time.monotonic() + spec.timeout_s
    out, err = bytearray(), bytearray()
    stopped = _read_until(proc, spec.max_output_bytes, deadline, wake_r, out, err)
    if stopped is None:   # both pipes closed: wait for the exit within what is left of the timeout
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            stopped = "timeout"
    if stopped is not None:
        _kill_group(proc)
    if stopped == "cancelled":
        return failure("cancelled", f"{program} was stopped: the call was cancelled")
    if stopped == "timeout":
        return failure("timeout", f"{program} did not finish within {spec.timeout_s:g} s and was stopped")
    truncated = stopped == "cap"
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(out[:spec.max_output_bytes]),
                                                                   final=not truncated)
    if not truncated and proc.returncode != 0:
        status = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                  else f"exited with status {proc.returncode}")
        return failure("exit_status", f"{program} {status}", exit_code=proc.returncode,
                       stderr=err.decode("utf-8", "replace"), output=text)
    return success(exit_code=None if truncated else proc.returncode, output=text, truncated=truncated)


def _read_until(proc: subprocess.Popen, cap_bytes: int, deadline: float, wake_r: int,
                out: bytearray, err: bytearray) -> str | None:
    """Drain stdout and stderr until both close; else why we stopped: cap, timeout or cancelled."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        sel.register(wake_r, selectors.EVENT_READ, None)
        open_pipes = 2
        while open_pipes:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return "timeout"
            for key, _ in sel.select(left_s):
                if key.data is None:
                    return "cancelled"
                chunk = os.read(key.fd, _READ_BYTES)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_pipes -= 1
                elif key.data is out:
                    out += chunk
                    if len(out) > cap_bytes:
                        return "cap"
                elif len(err) < STDERR_CAP_BYTES:   # keep draining past the cap so the child never blocks
                    err += chunk[:STDERR_CAP_BYTES - len(err)]
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group; SIGKILL to what is left once the leader is gone or after the
    grace, and only then reap the leader (until then its pid, the group id, cannot be reused)."""
    _signal_group(proc.pid, signal.SIGTERM)
    _wait_exited(proc.pid, KILL_GRACE_S)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_exited(pid: int, timeout_s: float) -> None:
    """Wait up to timeout_s for `pid` to exit, without reaping it."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:   # no pidfd (old kernel) or already reaped: poll instead
        fd = None
    if fd is not None:
        try:
            select.select([fd], [], [], timeout_s)
        finally:
            os.close(fd)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
