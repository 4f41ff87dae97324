"""The paho-mqtt client as the MQTT edge uses it: MQTT 3.1.1, the last will, bounded queue, TLS.

paho is imported here, and this module only by app.build when `mqtt:` is configured, so a daemon
without MQTT never loads it (tests/daemon/test_daemon_imports.py). Main thread (building).
"""

from __future__ import annotations

import os

from pivoice.mqtt.config import MqttConfig

CONNECT_TIMEOUT_S = 5.0
MAX_QUEUED_MESSAGES = 200      # paho's own outgoing queue, bounded while a slow broker catches up


def make_paho_client(cfg: MqttConfig):
    """A configured, unconnected paho client; ValueError names the key of an unusable TLS file."""
    import paho.mqtt.client as mqtt
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=mqtt.MQTTv311,
                         reconnect_on_failure=False)
    client.will_set(cfg.availability_topic, "offline", qos=1, retain=True)
    client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
    client.connect_timeout = CONNECT_TIMEOUT_S
    if cfg.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(cfg.tls, key)
            if path is not None and not os.access(path, os.R_OK):
                raise ValueError(f"mqtt.tls.{key}: {path}: cannot read (missing or no permission)")
        try:
            client.tls_set(ca_certs=cfg.tls.ca_file, certfile=cfg.tls.cert_file, keyfile=cfg.tls.key_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"mqtt.tls: cannot load the certificates: {exc}") from None
    return client
