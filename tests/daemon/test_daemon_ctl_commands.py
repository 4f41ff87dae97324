"""`pivoice ctl end | volume [N] | mute on|off` over a real control socket, down to the events and the Volume."""

from __future__ import annotations

import pytest

from pivoice import control
from pivoice import messages as m
from pivoice.audio.volume import Volume
from pivoice.device_commands import DeviceCommands, control_commands


@pytest.fixture
def served(tmp_path):
    posted, volume = [], Volume(80)
    commands = DeviceCommands(posted.append, volume)
    heard = []
    commands.add_volume_listener(lambda: heard.append(volume.volume_percent()))
    extra, valued = control_commands(commands)
    server = control.ControlServer(str(tmp_path / "run" / "control.sock"), on_press=lambda: None,
                                   on_release=lambda: None, get_status=lambda: {"state": "idle"},
                                   extra_commands=extra, value_commands=valued)
    server.start()
    try:
        yield server.path, posted, volume, heard
    finally:
        server.close()


def test_volume_is_read_and_set_and_listeners_hear_it(served, capsys):
    path, posted, volume, heard = served
    assert control.request(path, "volume") == {"ok": True, "volume": 80}
    assert control.request(path, "volume", value=35) == {"ok": True, "volume": 35}
    assert volume.volume_percent() == 35 and heard == [35] and posted == []
    assert control.main(["--socket", path, "volume", "60"]) == 0
    assert control.main(["--socket", path, "volume"]) == 0
    assert capsys.readouterr().out == "60\n60\n"
    for bad in (101, -1, 4.5, "50", True):
        reply = control.request(path, "volume", value=bad)
        assert reply["ok"] is False and "0..100" in reply["error"], (bad, reply)
    assert volume.volume_percent() == 60


def test_mute_and_end_become_controller_events(served):
    path, posted, volume, heard = served
    assert control.request(path, "mute", value="on") == {"ok": True, "muted": True}
    assert control.request(path, "mute", value="off") == {"ok": True, "muted": False}
    assert control.request(path, "end") == {"ok": True}
    assert posted == [m.SetMute(True, "ctl"), m.SetMute(False, "ctl"), m.EndRequest("ctl")]
    reply = control.request(path, "mute", value="maybe")
    assert reply == {"ok": False, "error": "mute: value must be \"on\" or \"off\", got 'maybe'"}
    assert control.request(path, "mute")["ok"] is False and len(posted) == 3


@pytest.mark.parametrize("argv,message", [
    (["volume", "loud"], "volume takes a whole number 0..100"),
    (["volume", "101"], "volume takes a whole number 0..100"),
    (["mute"], "mute takes on or off"),
    (["mute", "yes"], "mute takes on or off"),
    (["end", "now"], "end takes no argument"),
])
def test_the_command_line_refuses_bad_arguments_before_connecting(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        control.main(["--socket", "/nonexistent/control.sock", *argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
