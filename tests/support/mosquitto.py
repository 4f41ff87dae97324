"""A real mosquitto broker on 127.0.0.1 for the MQTT tests, and a subscriber that records what it hears.

`Broker` writes a config (plain, or with a password file, or TLS with a CA made here by openssl),
starts `mosquitto -c`, waits until the port accepts, and can be killed and started again on the
same port (no persistence: a restarted broker has forgotten every retained message).
`Recorder` is a paho client on its own loop thread (fine in a test) keeping every message.
Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

from support.certs import Tls
from support.tokenserver import free_port, stop_process

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


def have_mosquitto() -> bool:
    return Path(MOSQUITTO).exists()


@dataclass
class Broker:
    work: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] | None = None
    tls: Tls | None = None
    process: subprocess.Popen | None = None

    def config_text(self) -> str:
        # as root, mosquitto would drop to its own user, which cannot enter pytest's 0700 tmp dirs
        lines = ["user root"] if os.geteuid() == 0 else []
        lines += [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr",
                 "log_type error", "log_type warning", "log_type notice"]
        if self.users:
            passwd = self.work / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True,
                               capture_output=True, timeout=30)
            passwd.chmod(0o644)   # mosquitto drops to its own user and must read it
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [f"cafile {self.tls.ca_file}", f"certfile {self.tls.cert_file}", f"keyfile {self.tls.key_file}"]
        return "\n".join(lines) + "\n"

    def start(self) -> "Broker":
        self.work.mkdir(parents=True, exist_ok=True)
        conf = self.work / "mosquitto.conf"
        conf.write_text(self.config_text())
        log = open(self.work / "mosquitto.log", "ab")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.process.returncode}: {self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto not listening on {self.port}: {self.log_text()}")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a word to its clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def log_text(self) -> str:
        path = self.work / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running_broker(work: Path, **kwargs):
    broker = Broker(work, **kwargs).start()
    try:
        yield broker
    finally:
        broker.stop()


class Recorder:
    """Subscribes to `topics` and keeps (topic, payload, retain) of every message, in order."""

    def __init__(self, broker: Broker, *topics: str, username: str | None = None, password: str | None = None):
        self.messages: list[tuple[str, str, bool]] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"recorder-{id(self)}")
        if username:
            self.client.username_pw_set(username, password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.tls.ca_file))
        self._topics = topics
        self._subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the recorder could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append((message.topic, message.payload.decode("utf-8", "replace"), bool(message.retain)))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout_s: float = 10.0, what: str = "a message"):
        """The first message (topic, payload, retain) for which predicate holds, waiting up to timeout_s."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._cond:
            while True:
                for message in self.messages[seen:]:
                    if predicate(*message):
                        return message
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} after {timeout_s} s; heard: {self.messages[-20:]}")
                self._cond.wait(left)

    def latest(self, topic: str) -> str | None:
        with self._cond:
            for t, payload, _ in reversed(self.messages):
                if t == topic:
                    return payload
        return None

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
