"""The control socket for the admin group (0660 in a 0750 directory) and the test-only debug-freeze command."""

from __future__ import annotations

import os
import stat

from pivoice import control


def serve(path, **extra):
    srv = control.ControlServer(str(path), on_press=lambda: None, on_release=lambda: None,
                                get_status=lambda: {"state": "idle"}, extra_commands=extra or None)
    srv.start()
    return srv


def test_socket_and_a_directory_it_creates_are_open_to_the_group_only(tmp_path):
    old_umask = os.umask(0o077)   # the unit's UMask=
    try:
        srv = serve(tmp_path / "run" / "control.sock")
    finally:
        os.umask(old_umask)
    try:
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o660
        assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o750
        assert os.stat(srv.path).st_gid == os.getegid()
    finally:
        srv.close()


def test_debug_freeze_is_an_unknown_command_without_test_hooks(tmp_path, capsys):
    srv = serve(tmp_path / "control.sock")
    try:
        reply = control.request(srv.path, "debug-freeze")
        assert reply == {"ok": False, "error": "unknown cmd 'debug-freeze'; known: status, press, release"}
        assert control.main(["debug-freeze", "--socket", srv.path]) == 1
        assert "unknown cmd 'debug-freeze'" in capsys.readouterr().err
    finally:
        srv.close()


def test_debug_freeze_reaches_its_handler_when_test_hooks_are_on(tmp_path):
    frozen = []
    srv = serve(tmp_path / "control.sock", **{"debug-freeze": lambda: frozen.append(True)})
    try:
        assert control.main(["debug-freeze", "--socket", srv.path]) == 0
        assert frozen == [True]
        assert control.request(srv.path, "status") == {"ok": True, "status": {"state": "idle"}}
    finally:
        srv.close()
