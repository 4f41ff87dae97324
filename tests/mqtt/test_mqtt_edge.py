"""The MQTT edge against a real mosquitto on 127.0.0.1: Home Assistant discovery checked against HA's
documented schema, commands, state, broker restart, password file and TLS.

The edge runs in-process with a `DeviceCommands` whose `post` records the events it would give the
controller, and a real `Volume`. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import re
import time

import pytest

from support.certs import make_tls
from support.mosquitto import Recorder, have_mosquitto, running_broker

from pivoice import messages as m
from pivoice.audio.volume import Volume
from pivoice.device_commands import DeviceCommands
from pivoice.mqtt.client import MqttEdge
from pivoice.mqtt.transport import make_paho_client
from pivoice.mqtt.config import read_mqtt
from pivoice.mqtt.discovery import TEXT_STATE_CHARS
from pivoice.settings import Section

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed (scripts/lib/setup.sh)")

BASE = "pivoice/kitchen"
ID = r"[A-Za-z0-9_-]+"
# Home Assistant MQTT discovery: the keys each component requires, and those it accepts that we use
# (https://www.home-assistant.io/integrations/mqtt/ and the sensor/button/switch/number pages).
COMMON = {"name", "unique_id", "device", "origin", "availability", "has_entity_name", "icon", "entity_category",
          "json_attributes_topic", "value_template"}
SCHEMA = {
    "sensor": ({"state_topic"}, {"device_class", "state_class", "unit_of_measurement"}),
    "button": ({"command_topic"}, {"payload_press"}),
    "switch": ({"command_topic"}, {"state_topic", "payload_on", "payload_off", "state_on", "state_off"}),
    "number": ({"command_topic"}, {"state_topic", "min", "max", "step", "mode", "unit_of_measurement"}),
}
WANTED = {("sensor", "state"), ("sensor", "last_user_text"), ("sensor", "last_reply"), ("sensor", "token"),
          ("sensor", "conversations"), ("sensor", "total_tokens"), ("sensor", "audio_sent"),
          ("sensor", "audio_received"), ("button", "press"), ("button", "end"), ("switch", "mute"),
          ("number", "volume")}


class Posted(list):
    def wait_for(self, predicate, timeout_s: float = 5.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in self if predicate(e)]
            if found:
                return found[-1]
            time.sleep(0.01)
        raise AssertionError(f"nothing matching was posted in {timeout_s} s; posted: {list(self)}")


class Published:
    """The runtime's side: `get()` is the newest status handed to the watcher, as Runtime.status() would be."""

    def __init__(self) -> None:
        self.status = {"state": "idle", "token": {"state": "ok"}, "muted": False}

    def get(self) -> dict:
        return self.status

    def follow(self, watcher):
        def on_status(status: dict) -> None:
            self.status = status
            watcher(status)
        return on_status


def mqtt_config(port: int, **extra):
    section = {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "reconnect_min_s": 0.2, "reconnect_max_s": 1,
               **extra}
    return read_mqtt(Section({"mqtt": section}, "test.yaml"), "kitchen")


@pytest.fixture
def rig(tmp_path):
    """(broker, recorder, edge, posted, volume); the edge is started and online."""
    with running_broker(tmp_path / "broker") as broker:
        recorder = Recorder(broker, "homeassistant/#", f"{BASE}/#")
        posted, volume, published = Posted(), Volume(50), Published()
        commands = DeviceCommands(posted.append, volume)
        edge = MqttEdge(mqtt_config(broker.port), commands=commands, version="9.9.9", get_status=published.get)
        edge.on_status = published.follow(edge.on_status)
        commands.add_volume_listener(edge.refresh)
        edge.start()
        try:
            recorder.wait_for(lambda t, p, r: t == f"{BASE}/availability" and p == "online", what="online")
            yield broker, recorder, edge, posted, volume
        finally:
            edge.close()
            recorder.close()


def retained_configs(broker) -> dict[str, dict]:
    """What a Home Assistant starting now would read: the retained discovery configs."""
    late = Recorder(broker, "homeassistant/#")
    try:
        late.wait_for(lambda t, p, r: r, what="a retained config")
        time.sleep(0.2)   # the rest of the retained set follows at once
        return {t: json.loads(p) for t, p, r in late.messages if r}
    finally:
        late.close()


def template_path(template: str) -> list[str] | None:
    found = re.fullmatch(r"\{\{ value_json\.([a-z_.]+) \}\}", template)
    return found.group(1).split(".") if found else None


def test_discovery_configs_follow_home_assistants_schema(rig):
    broker, recorder, edge, posted, volume = rig
    configs = retained_configs(broker)
    seen, unique_ids, command_topics = set(), set(), set()
    states = {t: json.loads(recorder.latest(t)) for t in (f"{BASE}/state", f"{BASE}/user_text", f"{BASE}/reply")}
    for topic, payload in configs.items():
        found = re.fullmatch(rf"homeassistant/(sensor|button|switch|number)/({ID})/({ID})/config", topic)
        assert found, topic
        component, node_id, object_id = found.groups()
        required, optional = SCHEMA[component]
        assert required <= set(payload), (topic, required - set(payload))
        assert set(payload) <= required | optional | COMMON, (topic, set(payload) - required - optional - COMMON)
        assert payload["unique_id"] not in unique_ids and node_id == "kitchen"
        unique_ids.add(payload["unique_id"])
        device = payload["device"]
        assert device["identifiers"] == ["pivoice_kitchen"] and device["name"] == "pivoice kitchen"
        assert device["sw_version"] == "9.9.9" and device["model"] and payload["origin"]["name"] == "pivoice"
        assert payload["availability"] == [{"topic": f"{BASE}/availability", "payload_available": "online",
                                            "payload_not_available": "offline"}]
        if "command_topic" in payload:
            assert payload["command_topic"].startswith(BASE + "/") and payload["command_topic"] not in command_topics
            assert "+" not in payload["command_topic"] and "#" not in payload["command_topic"]
            command_topics.add(payload["command_topic"])
        if "state_topic" in payload:   # every state topic is published, and its template finds its value
            state = states[payload["state_topic"]]
            path = template_path(payload["value_template"])
            if path is not None:
                for key in path:
                    state = state[key]
                assert state is not None or object_id in ("last_user_text", "last_reply"), (topic, path)
        if payload.get("state_class"):
            assert payload["state_class"] in ("measurement", "total", "total_increasing")
        if component == "number":
            assert (payload["min"], payload["max"], payload["step"], payload["mode"]) == (0, 100, 1, "slider")
        seen.add((component, object_id))
    assert WANTED <= seen, WANTED - seen
    assert json.loads(recorder.latest(f"{BASE}/state"))["volume"] == 50


def test_commands_reach_the_device_and_bad_payloads_are_refused(rig, caplog):
    broker, recorder, edge, posted, volume = rig
    recorder.publish(f"{BASE}/press", "PRESS")
    assert posted.wait_for(lambda e: isinstance(e, m.Press)) == m.Press("mqtt")
    recorder.publish(f"{BASE}/end", "PRESS")
    assert posted.wait_for(lambda e: isinstance(e, m.EndRequest)) == m.EndRequest("mqtt")
    recorder.publish(f"{BASE}/mute/set", "ON")
    assert posted.wait_for(lambda e: e == m.SetMute(True, "mqtt"))
    recorder.publish(f"{BASE}/mute/set", "OFF")
    assert posted.wait_for(lambda e: e == m.SetMute(False, "mqtt"))
    recorder.publish(f"{BASE}/volume/set", "40.0")   # Home Assistant's number may send a float
    recorder.wait_for(lambda t, p, r: t == f"{BASE}/state" and json.loads(p)["volume"] == 40, what="volume 40")
    assert volume.volume_percent() == 40
    before = len(posted)
    with caplog.at_level(logging.WARNING, logger="pivoice.mqtt"):
        for topic, payload in ((f"{BASE}/mute/set", "maybe"), (f"{BASE}/volume/set", "101"),
                               (f"{BASE}/volume/set", "loud" * 100), (f"{BASE}/volume/set", "\udcff")):
            recorder.publish(topic, payload.encode("utf-8", "surrogateescape"))
        deadline = time.monotonic() + 5
        while edge.stats()["rejected_commands"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 4 and all(f"{BASE}/" in text for text in refused), refused
    assert "'maybe'" in refused[0] and "send ON or OFF" in refused[0]
    assert "0..100" in refused[1] and "…" in refused[2] and len(refused[2]) < 200
    assert len(posted) == before and volume.volume_percent() == 40


def test_a_command_left_retained_on_the_broker_does_not_act_at_connect(rig, caplog):
    broker, recorder, edge, posted, volume = rig
    recorder.publish(f"{BASE}/press", "PRESS", retain=True)   # live: the running edge presses once
    posted.wait_for(lambda e: isinstance(e, m.Press))
    later = Posted()   # a device connecting (or reconnecting) now is handed the retained copy
    other = MqttEdge(mqtt_config(broker.port, client_id="pivoice-other"), version="1",
                     commands=DeviceCommands(later.append, Volume()), get_status=lambda: {"state": "idle"})
    with caplog.at_level(logging.WARNING, logger="pivoice.mqtt"):
        other.start()
        try:
            deadline = time.monotonic() + 5
            while not any("retained command ignored" in r.getMessage() for r in caplog.records) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            other.close()
    assert any("retained command ignored" in r.getMessage() for r in caplog.records)
    assert later == [] and other.stats()["commands"] == 0


def test_state_follows_the_status_and_long_texts_are_capped(rig):
    broker, recorder, edge, posted, volume = rig
    long_reply = "word " * 400
    status = {"state": "active", "playing": True, "token": {"state": "ok"},
              "usage": {"total_tokens": 1234, "audio_sent_s": 3.5, "audio_received_s": 2.25},
              "ends": {"user": 2, "stalled": 1},
              "recent_texts": [{"kind": "user_transcript", "text": "What time is it?", "ts": "t1"},
                               {"kind": "reply_text", "text": long_reply, "ts": "t2"}]}
    started = time.perf_counter()
    edge.on_status(status)
    watcher_ms = (time.perf_counter() - started) * 1000
    assert watcher_ms < 5, watcher_ms   # the controller thread only hands it over
    _, payload, retained = recorder.wait_for(
        lambda t, p, r: t == f"{BASE}/state" and json.loads(p)["state"] == "speaking", what="speaking")
    state = json.loads(payload)
    assert state["usage"]["total_tokens"] == 1234 and state["usage"]["audio_received_s"] == 2.25
    assert state["conversations"] == 3 and state["abnormal_ends"] == 1 and state["token"] == "ok"
    reply = json.loads(recorder.wait_for(lambda t, p, r: t == f"{BASE}/reply" and "word" in p)[1])
    assert len(reply["text"]) == TEXT_STATE_CHARS and reply["text"].endswith("…")
    assert reply["full_text"] == long_reply[:4000] and reply["chars"] == len(long_reply)
    user = json.loads(recorder.latest(f"{BASE}/user_text"))
    assert user["text"] == "What time is it?"
    for phase, extra, expected in (("active", {"response_active": True}, "thinking"), ("active", {}, "listening"),
                                   ("connecting", {}, "connecting"), ("idle", {"muted": True}, "muted")):
        edge.on_status({**status, "state": phase, "playing": False, **extra})
        recorder.wait_for(lambda t, p, r: t == f"{BASE}/state" and json.loads(p)["state"] == expected,
                          what=expected)


def test_a_broker_restart_is_survived_and_everything_is_published_again(rig):
    broker, recorder, edge, posted, volume = rig
    recorder.close()
    broker.kill()
    deadline = time.monotonic() + 5
    while edge.stats()["connected"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not edge.stats()["connected"]
    # the broker is away: status changes pile up as one (newest) state, and never block the caller
    started = time.perf_counter()
    for i in range(200):
        edge.on_status({"state": "active", "playing": i % 2 == 0, "token": {"state": "ok"}})
    edge.on_status({"state": "idle", "token": {"state": "ok"}, "muted": True})
    assert (time.perf_counter() - started) * 1000 < 50
    assert edge.stats()["superseded"] >= 200
    restarted_at = time.monotonic()
    broker.start()   # same port; no persistence: every retained message is gone
    recorder = Recorder(broker, "homeassistant/#", f"{BASE}/#")
    try:
        recorder.wait_for(lambda t, p, r: t == f"{BASE}/availability" and p == "online", timeout_s=10,
                          what="online again")
        reconnect_s = time.monotonic() - restarted_at
        configs = retained_configs(broker)
        assert len(configs) >= len(WANTED)
        assert json.loads(recorder.latest(f"{BASE}/state"))["state"] == "muted"   # the newest state won
        assert edge.stats()["connects"] == 2 and reconnect_s < 3, (edge.stats(), reconnect_s)
        recorder.publish(f"{BASE}/press", "PRESS")   # and it listens again
        posted.wait_for(lambda e: isinstance(e, m.Press))
    finally:
        recorder.close()


def test_a_clean_stop_says_offline(rig):
    broker, recorder, edge, posted, volume = rig
    edge.close()
    recorder.wait_for(lambda t, p, r: t == f"{BASE}/availability" and p == "offline", what="offline")
    late = Recorder(broker, f"{BASE}/availability")   # and it stays on the broker for whoever comes later
    try:
        assert late.wait_for(lambda t, p, r: r, what="retained availability")[1] == "offline"
    finally:
        late.close()


def test_username_and_password_from_a_file(tmp_path, caplog):
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("wrong\n")
    password_file.chmod(0o600)
    with running_broker(tmp_path / "broker", users={"pivoice": "s3cret", "ha": "ha-pass"}) as broker:
        recorder = Recorder(broker, f"{BASE}/#", username="ha", password="ha-pass")
        cfg = mqtt_config(broker.port, username="pivoice", password_file=str(password_file))
        edge = MqttEdge(cfg, commands=DeviceCommands(lambda e: None, Volume()), version="1",
                        get_status=lambda: {"state": "idle"})
        try:
            with caplog.at_level(logging.ERROR, logger="pivoice.mqtt"):
                edge.start()
                deadline = time.monotonic() + 5
                while edge.stats()["connect_failures"] + edge.stats()["disconnects"] == 0 and \
                        not any("refused the connection" in r.getMessage() for r in caplog.records) and \
                        time.monotonic() < deadline:
                    time.sleep(0.02)
            assert any("refused the connection" in r.getMessage() for r in caplog.records)
            assert not any("wrong" in r.getMessage() or "s3cret" in r.getMessage() for r in caplog.records)
            assert recorder.latest(f"{BASE}/availability") is None
            password_file.write_text("s3cret\n")   # fixed: read again at the next attempt, no restart
            recorder.wait_for(lambda t, p, r: t == f"{BASE}/availability" and p == "online", what="online")
        finally:
            edge.close()
            recorder.close()


def test_tls_with_a_self_signed_ca(tmp_path):
    tls = make_tls(tmp_path / "tls")
    with running_broker(tmp_path / "broker", tls=tls) as broker:
        recorder = Recorder(broker, f"{BASE}/#")
        edge = MqttEdge(mqtt_config(broker.port, tls={"ca_file": str(tls.ca_file)}),
                        commands=DeviceCommands(lambda e: None, Volume()), version="1",
                        get_status=lambda: {"state": "idle"})
        try:
            edge.start()
            recorder.wait_for(lambda t, p, r: t == f"{BASE}/availability" and p == "online", what="online over TLS")
            edge.on_status({"state": "active"})
            recorder.wait_for(lambda t, p, r: t == f"{BASE}/state" and json.loads(p)["state"] == "listening")
        finally:
            edge.close()
            recorder.close()
        with pytest.raises(ValueError, match=r"mqtt.tls.ca_file: .*cannot read"):
            make_paho_client(mqtt_config(broker.port, tls={"ca_file": str(tmp_path / "missing.pem")}))
