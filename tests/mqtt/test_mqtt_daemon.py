"""The real `pivoice run` process with `mqtt:` on, against mosquitto, the dev server and the token backend.

Home Assistant's side is a paho subscriber: a press from MQTT starts a conversation, the state sensor
follows it, a broker killed and restarted in the middle leaves the conversation untouched and gets
discovery and state again, the end button ends it; `ctl volume/mute/end` and MQTT agree; an idle
daemon with MQTT wakes no thread; killing the daemon makes the broker publish its last will.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from support.fixtures_audio import make_speech_wav
from support.mosquitto import Recorder, have_mosquitto, running_broker
from support.stack import offline_stack, running

from pivoice import control

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed (scripts/lib/setup.sh)")]

BASE = "pivoice/kitchen"
AVAILABILITY = f"{BASE}/availability"
STATE = f"{BASE}/state"
SETTLE_S = 2.0
WINDOW_S = 3.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    work = tmp_path_factory.mktemp("mqtt-daemon")
    question = make_speech_wav(work / "question.wav", "What time does the kitchen open tomorrow morning?",
                               rate_hz=16000, lead_silence_s=0.1, tail_silence_s=2.0)
    with offline_stack(work / "stack", default_expires_after_s=300) as stack, \
            running_broker(work / "broker") as broker:
        yield stack, broker, question


def daemon_config(stack, broker, work: Path, mic: Path) -> dict:
    config = stack.config(mic=f"wav:{mic}", speaker=f"wav:{work / 'reply.wav'}",
                          conversation={"idle_timeout_s": 30})
    config["control"]["socket_path"] = str(work / "control.sock")
    config["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1}
    return config


def state_is(expected: str):
    return lambda t, p, r: t == STATE and json.loads(p)["state"] == expected


def test_home_assistant_drives_a_conversation_through_a_broker_restart(rig, tmp_path):
    stack, broker, question = rig
    recorder = Recorder(broker, "homeassistant/#", f"{BASE}/#")
    try:
        with running(stack.daemon(daemon_config(stack, broker, tmp_path, question))) as daemon:
            recorder.wait_for(lambda t, p, r: t == AVAILABILITY and p == "online", what="online")
            assert json.loads(recorder.latest(STATE))["state"] == "idle"
            recorder.publish(f"{BASE}/press", "PRESS")
            daemon.wait_for("session", timeout_s=20)
            recorder.wait_for(state_is("listening"), what="listening")
            broker.kill()   # mid-conversation: the conversation must not notice
            daemon.wait_for("reply_played", timeout_s=40)
            assert daemon.status()["state"] == "active"
            recorder.close()
            broker.start()
            restarted_at = time.monotonic()
            recorder = Recorder(broker, "homeassistant/#", f"{BASE}/#")
            recorder.wait_for(lambda t, p, r: t == AVAILABILITY and p == "online", timeout_s=10, what="online again")
            back_s = time.monotonic() - restarted_at
            configs = [t for t, p, r in recorder.messages if t.startswith("homeassistant/") and t.endswith("/config")]
            assert len(configs) >= 12, configs   # discovery again: the restarted broker had forgotten it
            assert json.loads(recorder.latest(STATE))["state"] in ("listening", "thinking", "speaking")
            recorder.publish(f"{BASE}/end", "PRESS")
            ended = daemon.wait_for("ended", timeout_s=10)
            final = json.loads(recorder.wait_for(state_is("idle"), what="idle after the end")[1])
            status = daemon.status()
        timeline = [e["kind"] for e in daemon.timeline()]
        assert timeline.index("pressed") < timeline.index("reply_played") < timeline.index("ended")
        assert "mqtt" in ended["text"] or status["last_end_code"] == "user", (ended, status["last_end_code"])
        assert status["last_end_code"] == "user" and final["conversations"] == 1
        assert "lost the broker" in daemon.stderr_text()
        print(f"broker outage survived; online again {back_s:.2f} s after the broker restarted")
    finally:
        recorder.close()


def thread_switches(pid: int) -> dict[int, int]:
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if "ctxt_switches" in line)
        counts[int(tid)] = int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return counts


def test_ctl_and_mqtt_agree_an_idle_daemon_sleeps_and_its_death_is_announced(rig, tmp_path, capsys):
    stack, broker, question = rig
    recorder = Recorder(broker, "homeassistant/#", f"{BASE}/#")
    try:
        with running(stack.daemon(daemon_config(stack, broker, tmp_path, question))) as daemon:
            recorder.wait_for(lambda t, p, r: t == AVAILABILITY and p == "online", what="online")
            recorder.clear()   # the broker still held the first test's retained state
            sock = str(daemon.socket_path)
            assert control.request(sock, "volume", value=40) == {"ok": True, "volume": 40}
            recorder.wait_for(lambda t, p, r: t == STATE and json.loads(p)["volume"] == 40, what="volume 40")
            recorder.publish(f"{BASE}/volume/set", "70")
            deadline = time.monotonic() + 5
            while control.request(sock, "volume")["volume"] != 70 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert control.main(["--socket", sock, "volume"]) == 0 and capsys.readouterr().out == "70\n"
            assert control.request(sock, "volume", value=101)["error"].startswith("volume: volume must be")
            assert control.request(sock, "mute", value="on") == {"ok": True, "muted": True}
            recorder.wait_for(lambda t, p, r: t == STATE and json.loads(p)["muted"], what="muted")
            assert control.request(sock, "press") == {"ok": True}
            daemon.wait_for("muted", timeout_s=5)   # the press is refused while muted
            recorder.clear()
            recorder.publish(f"{BASE}/mute/set", "OFF")
            recorder.wait_for(lambda t, p, r: t == STATE and json.loads(p)["state"] == "idle"
                              and not json.loads(p)["muted"], what="unmuted")
            assert control.request(sock, "end") == {"ok": True}   # nothing to end: a note, no harm
            # idle, MQTT connected: no thread of the daemon wakes (keepalive 60 s)
            pid = daemon.process.pid
            time.sleep(SETTLE_S)
            before = thread_switches(pid)
            time.sleep(WINDOW_S)
            after = thread_switches(pid)
            woke = {tid: n - before.get(tid, 0) for tid, n in after.items() if n != before.get(tid)}
            assert woke == {}, f"threads that woke in {WINDOW_S} s idle with MQTT: {woke}"
            # a reload (SIGHUP) hands over to a new MQTT link: the renamed device is announced again
            config = yaml.safe_load(daemon.config_path.read_text())
            config["mqtt"]["device_name"] = "Kitchen speaker"
            daemon.config_path.write_text(yaml.safe_dump(config))
            recorder.clear()
            os.kill(pid, signal.SIGHUP)
            recorder.wait_for(lambda t, p, r: t == "homeassistant/sensor/kitchen/state/config"
                              and json.loads(p)["device"]["name"] == "Kitchen speaker", what="the renamed device")
            recorder.wait_for(lambda t, p, r: t == AVAILABILITY and p == "online", what="online after the reload")
            # the new build starts from the file's audio.output.volume again, and says so
            assert control.request(sock, "volume")["volume"] == 100 == json.loads(recorder.latest(STATE))["volume"]
            recorder.clear()
            os.kill(pid, signal.SIGKILL)   # no goodbye: the broker must say it (last will)
            killed_at = time.monotonic()
            recorder.wait_for(lambda t, p, r: t == AVAILABILITY and p == "offline", timeout_s=5, what="the last will")
            print(f"last will heard {1000 * (time.monotonic() - killed_at):.1f} ms after SIGKILL")
        with running(stack.daemon(daemon_config(stack, broker, tmp_path, question))):   # the service restarts it
            recorder.wait_for(lambda t, p, r: t == AVAILABILITY and p == "online", what="online after the restart")
    finally:
        recorder.close()
