"""The MQTT edge: Home Assistant discovery, state, availability and commands over one broker link.

One `pv-mqtt` thread owns the paho client (paho-mqtt >= 2, CallbackAPIVersion.VERSION2) and is the
only thread that talks to the broker. The controller thread's status watcher (`on_status`) only
keeps the newest status in a one-slot mailbox and writes a byte to a wake-up socket: a dead or slow
broker can never hold up a conversation, and states that pile up while the broker is away are
superseded, not queued (`stats()["superseded"]`).

We run the network loop ourselves (select on paho's socket and our wake-up socket, then
loop_read / loop_write / loop_misc) rather than paho's loop_start(): paho's thread selects with a
1 s timeout, so an idle daemon would wake every second. Ours sleeps until a status change, a
command, or the keepalive ping falls due. Reconnects back off from reconnect_min_s, doubling up
to reconnect_max_s, and start again from the minimum after a session the broker accepted; the
password is read at each connect. On connect: subscribe to the command topics, publish the
retained discovery configs, the state, then `online`; the last will publishes `offline` when the
link dies, and a clean stop publishes it before disconnecting.

Thread: built, started and closed on the main thread; `on_status` from the controller thread;
`refresh` from any thread; everything else on `pv-mqtt`.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time

from pivoice.device_commands import DeviceCommands
from pivoice.loopback import is_loopback
from pivoice.mqtt.commands import CommandHandler
from pivoice.mqtt.config import MqttConfig
from pivoice.mqtt.discovery import Topics, conversation_count, discovery_messages, state_messages
from pivoice.mqtt.transport import make_paho_client
from pivoice.osthread import name_this_thread

log = logging.getLogger(__name__)
KEEPALIVE_MARGIN_S = 0.05      # wake just after paho's own keepalive clock says a ping is due
GOODBYE_TIMEOUT_S = 1.0        # for `offline` and DISCONNECT to leave at a clean stop
_REFRESH = object()            # mailbox marker: republish the last status (the volume changed)


class MqttEdge:
    def __init__(self, cfg: MqttConfig, *, commands: DeviceCommands, get_status, version: str,
                 client=None, clock=time.monotonic) -> None:
        self._cfg = cfg
        self._commands = commands
        self._get_status = get_status
        self._clock = clock
        self._topics = Topics.of(cfg)
        self._discovery = discovery_messages(cfg, version)
        self._handler = CommandHandler(self._topics, commands)
        cfg.password()   # a bad password file fails at start-up, naming the key, not at the first connect
        self._client = client if client is not None else make_paho_client(cfg)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        if cfg.tls is None and not is_loopback(cfg.host):
            log.warning("mqtt.host %s is not loopback and mqtt.tls is off: the password, transcripts and "
                        "commands cross the network in clear text", cfg.host)
        self._lock = threading.Lock()
        self._mailbox: object = None
        self._previous: dict | None = None   # controller thread only
        self._conversations = 0
        self._last_status: dict = {}
        self._published: dict[str, str] = {}
        self._connected = False
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stats = dict.fromkeys(("connects", "connect_failures", "disconnects", "published", "superseded",
                                     "commands"), 0)
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    # ---- main thread -----------------------------------------------------------------

    def start(self) -> None:
        log.info("mqtt: broker %s:%d (%s), topics under %s", self._cfg.host, self._cfg.port,
                 "TLS" if self._cfg.tls is not None else "plain", self._cfg.base_topic)
        self._thread.start()

    def close(self, timeout_s: float = 3.0) -> None:
        """Publish `offline`, disconnect and end the thread (bounded: a hung broker is cut off)."""
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    # ---- any thread ------------------------------------------------------------------

    def on_status(self, status: dict) -> None:
        """The status watcher (controller thread): keep the newest, wake the MQTT thread."""
        self._conversations = conversation_count(status, self._previous, self._conversations)
        self._previous = status
        self._post(status)

    def refresh(self) -> None:
        """Republish the state (the volume changed outside the controller)."""
        self._post(_REFRESH)

    def stats(self) -> dict:
        with self._lock:
            return {**self._stats, "connected": self._connected, "rejected_commands": self._handler.rejected}

    def _post(self, item: object) -> None:
        with self._lock:
            if item is _REFRESH:   # a status waiting to go out will carry the new volume anyway
                self._mailbox = _REFRESH if self._mailbox is None else self._mailbox
            else:
                if self._mailbox is not None and self._mailbox is not _REFRESH:
                    self._stats["superseded"] += 1
                self._mailbox = item
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:   # full (a wake-up is already pending) or closed
            pass

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    # ---- MQTT thread -----------------------------------------------------------------

    def _run(self) -> None:
        name_this_thread("mqtt")
        delay_s = self._cfg.reconnect_min_s
        failures_in_a_row = 0
        try:
            while not self._stopping.is_set():
                accepted = False
                if self._connect(failures_in_a_row, delay_s):
                    accepted = self._serve()
                if self._stopping.is_set():
                    break
                if accepted:
                    delay_s, failures_in_a_row = self._cfg.reconnect_min_s, 0
                else:
                    failures_in_a_row += 1
                self._stopping.wait(delay_s)
                if not accepted:
                    delay_s = min(delay_s * 2, self._cfg.reconnect_max_s)
        finally:
            self._goodbye()

    def _connect(self, failures_in_a_row: int, delay_s: float) -> bool:
        cfg = self._cfg
        try:
            if cfg.username is not None:
                self._client.username_pw_set(cfg.username, cfg.password())
            self._client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
            return True
        except (OSError, ValueError) as exc:
            self._count("connect_failures")
            # the first failure of an outage is a WARNING; the retries after it only at DEBUG
            level = logging.WARNING if failures_in_a_row == 0 else logging.DEBUG
            log.log(level, "mqtt: cannot connect to %s:%d: %s; retrying in %.1f s (then backing off to %.0f s)",
                    cfg.host, cfg.port, exc, delay_s, cfg.reconnect_max_s)
            return False

    def _serve(self) -> bool:
        """Run the link until it drops or we stop; True if the broker accepted the session."""
        import paho.mqtt.client as mqtt
        client, ok = self._client, mqtt.MQTT_ERR_SUCCESS
        accepted = False
        out_at = in_at = self._clock()
        while not self._stopping.is_set():
            sock = client.socket()
            if sock is None:
                break
            if self._connected:
                accepted = True
                if self._publish_mailbox():
                    out_at = self._clock()
            due_s = min(out_at, in_at) + self._cfg.keepalive_s + KEEPALIVE_MARGIN_S - self._clock()
            pending = sock.pending() if hasattr(sock, "pending") else 0   # TLS bytes already decrypted
            timeout_s = 0.0 if pending else max(0.0, due_s)
            try:
                readable, writable, _ = select.select([sock, self._wake_r], [sock] if client.want_write() else [],
                                                      [], timeout_s)
            except (OSError, ValueError):
                break
            if self._wake_r in readable:
                self._drain_wake()
            if sock in readable or pending:
                if client.loop_read() != ok:
                    break
                in_at = self._clock()
            if client.socket() is not None and client.want_write():
                if client.loop_write() != ok:
                    break
                out_at = self._clock()
            if not readable and not writable and not pending:   # timed out: a keepalive ping may be due
                if client.loop_misc() != ok:
                    break
                out_at = in_at = self._clock()
        if self._connected:
            self._connected = False
            self._count("disconnects")
            if not self._stopping.is_set():
                log.warning("mqtt: lost the broker at %s:%d; reconnecting", self._cfg.host, self._cfg.port)
        return accepted

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _publish_mailbox(self) -> bool:
        with self._lock:
            item, self._mailbox = self._mailbox, None
        if item is None:
            return False
        if item is not _REFRESH:
            self._last_status = item
        return self._publish_state()

    def _publish_state(self) -> bool:
        volume = self._commands.volume_percent()
        sent = False
        for topic, payload in state_messages(self._topics, self._last_status, conversations=self._conversations,
                                             volume_percent=volume if volume is not None else 100):
            if self._published.get(topic) != payload:
                self._client.publish(topic, payload, qos=0, retain=True)
                self._published[topic] = payload
                self._count("published")
                sent = True
        return sent

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt: %s:%d refused the connection: %s", self._cfg.host, self._cfg.port, reason_code)
            return
        self._connected = True
        self._count("connects")
        log.info("mqtt: connected to %s:%d", self._cfg.host, self._cfg.port)
        client.subscribe([(topic, 1) for topic in self._topics.commands()])
        for topic, payload in self._discovery:
            client.publish(topic, payload, qos=1, retain=True)
        self._published.clear()   # the broker may have lost our retained state: send it all again
        with self._lock:
            self._mailbox = None   # older than what get_status() reads now; a newer one may still come
        try:
            self._last_status = self._get_status()
        except Exception:   # the state follows with the next change; the link matters more
            log.exception("mqtt: cannot read the status to publish")
        self._publish_state()
        client.publish(self._topics.availability, "online", qos=1, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected and not self._stopping.is_set():
            log.info("mqtt: disconnected: %s", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        if message.retain:   # a command left retained on the broker would act again at every reconnect
            log.warning("mqtt: %s: retained command ignored (publish commands without retain)", message.topic)
            return
        self._count("commands")
        self._handler.handle(message.topic, message.payload)

    def _goodbye(self) -> None:
        client = self._client
        if self._connected and client.socket() is not None:
            client.publish(self._topics.availability, "offline", qos=1, retain=True)
            client.disconnect()
            deadline = self._clock() + GOODBYE_TIMEOUT_S
            while client.socket() is not None and client.want_write() and self._clock() < deadline:
                select.select([], [client.socket()], [], max(0.0, deadline - self._clock()))
                client.loop_write()
        self._connected = False
        try:
            sock = client.socket()
            if sock is not None:
                sock.close()
        except OSError:
            pass
