"""The `mqtt:` config section: broker, topics, credentials, TLS, keepalive and reconnect backoff.

`read_mqtt()` returns None when the section is absent or null (MQTT off). Errors name the key
path (`mqtt.tls.cert_file: ...`). The password is not read here but at each connect
(`password()`), so a rotated password file needs no restart; it is never logged.

Main thread, at config load; `password()` on the MQTT thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pivoice import credentials
from pivoice.credentials import CREDENTIALS_VAR, CredentialError
from pivoice.settings import Section

_TOPIC_PART = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")
MAX_PASSWORD_BYTES = 4096


@dataclass(frozen=True)
class TlsConfig:
    ca_file: str | None      # None: the system's CAs
    cert_file: str | None    # client certificate (with key_file), for brokers that ask for one
    key_file: str | None


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    client_id: str
    base_topic: str
    discovery_prefix: str
    device_id: str           # tokens.device_id: names the device and its entities' unique ids
    device_name: str
    username: str | None
    password_file: str | None         # may start with ${CREDENTIALS_DIRECTORY}
    password_credential: str | None   # a systemd credential name: $CREDENTIALS_DIRECTORY/<name>
    tls: TlsConfig | None
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float

    @property
    def availability_topic(self) -> str:
        return f"{self.base_topic}/availability"

    def password(self, environ=os.environ) -> str | None:
        """The password as the file holds it now (surrounding whitespace stripped); ValueError names the key."""
        found = credentials.secret_path(self.password_file, "mqtt.password_file", self.password_credential,
                                        "mqtt.password_credential", environ)
        if found is None:
            return None
        key, path = found
        try:
            return credentials.read_one_line(path, MAX_PASSWORD_BYTES)
        except CredentialError as exc:
            raise ValueError(f"{key}: {exc}") from None


def _topic(sec: Section, key: str, default: str) -> str:
    value = sec.str(key, default)
    if not _TOPIC_PART.match(value):
        raise sec.error(key, f"must be topic levels of A-Z a-z 0-9 _ - joined by /, no wildcards and no "
                             f"leading or trailing /; got {value!r}")
    return value


def _file(sec: Section, key: str) -> str | None:
    value = sec.str(key, None, nullable=True)
    if value is not None and not (Path(value).is_absolute() or value.startswith(CREDENTIALS_VAR)):
        raise sec.error(key, f"must be an absolute path (or start with {CREDENTIALS_VAR}), got {value!r}")
    return value


def _read_tls(root: Section) -> TlsConfig | None:
    if root.raw("tls", None) is None:
        return None
    sec = root.section("tls")
    tls = TlsConfig(ca_file=_file(sec, "ca_file"), cert_file=_file(sec, "cert_file"), key_file=_file(sec, "key_file"))
    if (tls.cert_file is None) != (tls.key_file is None):
        raise sec.error("cert_file" if tls.cert_file is None else "key_file",
                        "cert_file and key_file go together (a client certificate needs its key)")
    sec.done()
    return tls


def read_mqtt(root: Section, device_id: str) -> MqttConfig | None:
    """The top-level `mqtt:` section of `root`, or None (MQTT off)."""
    if root.raw("mqtt", None) is None:
        return None
    sec = root.section("mqtt")
    host = sec.str("host")
    tls = _read_tls(sec)
    slug = re.sub(r"[^A-Za-z0-9_\-]", "_", device_id)
    username = sec.str("username", None, nullable=True)
    password_file = _file(sec, "password_file")
    credential = sec.str("password_credential", None, nullable=True)
    if credential is not None and not _CREDENTIAL_NAME.match(credential):
        raise sec.error("password_credential", f"must be a systemd credential name (A-Z a-z 0-9 _ . -), "
                                               f"got {credential!r}")
    if credential is not None and password_file is not None:
        raise sec.error("password_credential", "give password_file or password_credential, not both")
    if (password_file or credential) and username is None:
        raise sec.error("username", "is required with a password")
    cfg = MqttConfig(
        host=host,
        port=sec.int("port", 8883 if tls is not None else 1883, min=1, max=65535),
        client_id=sec.str("client_id", f"pivoice-{slug}"),
        base_topic=_topic(sec, "base_topic", f"pivoice/{slug}"),
        discovery_prefix=_topic(sec, "discovery_prefix", "homeassistant"),
        device_id=slug,
        device_name=sec.str("device_name", f"pivoice {device_id}"),
        username=username,
        password_file=password_file,
        password_credential=credential,
        tls=tls,
        keepalive_s=sec.int("keepalive_s", 60, min=5, max=3600),
        reconnect_min_s=sec.float("reconnect_min_s", 1.0, min=0.1, max=600),
        reconnect_max_s=sec.float("reconnect_max_s", 120.0, min=0.1, max=3600),
    )
    if cfg.reconnect_max_s < cfg.reconnect_min_s:
        raise sec.error("reconnect_max_s", f"must be >= reconnect_min_s ({cfg.reconnect_min_s}), "
                                           f"got {cfg.reconnect_max_s}")
    sec.done()
    return cfg

