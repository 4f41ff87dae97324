"""The local control socket: `pivoice ctl press | release | status | end | volume [N] | mute on|off`.

A Unix stream socket speaking JSON lines: one request object per line
(`{"cmd": "press"}`; a command that takes an argument carries it as "value":
`{"cmd": "volume", "value": 40}`), one reply object per line (`{"ok": true, ...}`). It is
how a kiosk app, a test or the demo presses the button without GPIO, and how an
operator reads the daemon's state. The socket is created 0660, owned by the
daemon's user and primary group (`pivoice` under the unit): the daemon's user,
root and members of that group (the admins `scripts/install` adds to it) may
drive the device and read its status; nobody else may even connect.

`debug-freeze` exists only when the daemon runs with PIVOICE_TEST_HOOKS=1 (the
booted-systemd test uses it to hang the controller thread and watch the
watchdog restart the daemon); otherwise it is refused like any unknown command.

`ControlServer` runs an accept thread and a short-lived thread per client;
handlers it calls must only enqueue or read published state.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Callable, Mapping

from pivoice.osthread import name_this_thread

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 4096
COMMANDS = ("press", "release", "status", "end", "volume", "mute")
TEST_COMMANDS = ("debug-freeze",)
SOCKET_MODE = 0o660


class ControlServer:
    """Started and closed on the main thread; requests are served on its own threads."""

    def __init__(self, path: str, *, on_press: Callable[[], None], on_release: Callable[[], None],
                 get_status: Callable[[], dict], extra_commands: Mapping[str, Callable[[], None]] | None = None,
                 value_commands: Mapping[str, Callable[[object], dict]] | None = None):
        self.path = path
        self._handlers = {"press": on_press, "release": on_release, **(extra_commands or {})}
        # called with the request's "value" (None if absent); a ValueError is the client's mistake
        self._value_handlers = dict(value_commands or {})
        self._get_status = get_status
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._accept_loop, name="control", daemon=True)

    def start(self) -> None:
        directory = Path(self.path).parent
        try:
            directory.mkdir(parents=True, mode=0o750)
            os.chmod(directory, 0o750)   # as RuntimeDirectoryMode= in the unit, whatever the umask
        except FileExistsError:
            pass
        try:
            os.unlink(self.path)   # a stale socket from a crashed run would block bind()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o777 & ~SOCKET_MODE)   # no window in which the socket is wider than 0660
        try:
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            raise OSError(f"control.socket_path {self.path}: cannot bind: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        sock.listen(8)
        self._sock = sock
        self._thread.start()
        log.info("control socket at %s", self.path)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _accept_loop(self) -> None:
        name_this_thread("control")
        while self._sock is not None:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="control-client", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        name_this_thread("control-client")
        with client, client.makefile("rwb") as stream:
            client.settimeout(10)
            try:
                for line in stream:
                    reply = self._reply(line)
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
            except (OSError, ValueError):
                return

    def _reply(self, line: bytes) -> dict:
        if len(line) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "request is not JSON; send e.g. {\"cmd\": \"press\"}"}
        cmd = request.get("cmd") if isinstance(request, dict) else None
        if cmd == "status":
            return {"ok": True, "status": self._get_status()}
        if cmd in self._handlers:
            self._handlers[cmd]()
            return {"ok": True}
        if cmd in self._value_handlers:
            try:
                return {"ok": True, **self._value_handlers[cmd](request.get("value"))}
            except ValueError as exc:
                return {"ok": False, "error": f"{cmd}: {exc}"}
        known = ("status", *self._handlers, *self._value_handlers)
        return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {', '.join(known)}"}


def request(path: str, cmd: str, timeout_s: float = 5.0, value: object = None) -> dict:
    """Send one command (with its value, if any) to a running daemon and return its reply."""
    message = {"cmd": cmd} if value is None else {"cmd": cmd, "value": value}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline()
    if not line:
        raise ConnectionError(f"{path}: the daemon closed the connection without replying")
    return json.loads(line)


def main(argv: list[str]) -> int:
    """`pivoice ctl [--socket PATH | --config FILE] press|release|status|end|volume [N]|mute on|off`."""
    parser = argparse.ArgumentParser(
        prog="pivoice ctl", description="Drive a running pivoice daemon.",
        epilog="debug-freeze hangs the controller thread (watchdog tests); the daemon accepts it only when "
               "started with PIVOICE_TEST_HOOKS=1.")
    parser.add_argument("cmd", choices=COMMANDS + TEST_COMMANDS)
    parser.add_argument("value", nargs="?", help="volume: 0..100 (none: print the volume); mute: on or off")
    parser.add_argument("--socket", help="control socket path (default: from --config, else /run/pivoice/control.sock)")
    parser.add_argument("--config", help="daemon config file to read control.socket_path from")
    args = parser.parse_args(argv)
    try:
        value = command_value(args.cmd, args.value)
    except ValueError as exc:
        parser.error(str(exc))
    path = args.socket
    if path is None and args.config:
        from pivoice.config import load_or_report   # only here: ctl needs no YAML otherwise
        cfg = load_or_report(args.config)
        if cfg is None:
            return 2
        path = cfg.control.socket_path
    path = path or "/run/pivoice/control.sock"
    try:
        reply = request(path, args.cmd, value=value)
    except (OSError, ConnectionError) as exc:
        print(f"pivoice ctl: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"pivoice ctl: {reply.get('error')}", file=sys.stderr)
        return 1
    if args.cmd == "status":
        print(json.dumps(reply["status"], indent=2, sort_keys=True))
    elif args.cmd == "volume":
        print(reply.get("volume"))
    return 0


def command_value(cmd: str, text: str | None) -> object:
    """The JSON value a command's argument becomes; ValueError says what the command takes."""
    if cmd == "volume":
        if text is None:
            return None
        if not text.isdigit() or not 0 <= int(text) <= 100:
            raise ValueError(f"volume takes a whole number 0..100, got {text!r}")
        return int(text)
    if cmd == "mute":
        if text not in ("on", "off"):
            raise ValueError(f"mute takes on or off, got {text!r}")
        return text
    if text is not None:
        raise ValueError(f"{cmd} takes no argument, got {text!r}")
    return None
