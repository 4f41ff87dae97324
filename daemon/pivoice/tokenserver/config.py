"""Token backend configuration: one YAML file read through `pivoice.settings.Section`.

Every key, its unit and its default is documented in config/token-server.example.yaml.
Errors name the file and the dotted key path; the API key's value never appears in one.

Called from the main thread at start-up (CLI and each uvicorn worker's app factory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pivoice.settings import ConfigError, Section, load_yaml_mapping
from pivoice.tokenserver.policy import Policy, parse_policy

CONFIG_ENV = "PIVOICE_TOKEN_SERVER_CONFIG"
DEFAULT_CONFIG_PATH = "/etc/pivoice/token-server.yaml"
DEFAULT_DATABASE_URL = "sqlite:////var/lib/pivoice-token-server/devices.db"


@dataclass(frozen=True)
class UpstreamConfig:
    base_url: str
    api_key_env: str
    api_key_file: str | None
    connect_timeout_s: float
    timeout_s: float
    retries: int
    backoff_s: float
    max_retry_after_s: float


@dataclass(frozen=True)
class FleetConfig:
    """Device status heartbeats and the admin API (fleet*.py)."""

    admin_token_file: str | None = None   # None: /admin/* answers 404
    status_min_interval_s: float = 10.0   # per device: one report per this many seconds ...
    status_burst: int = 3                 # ... after a burst of this many
    default_status_interval_s: float = 300.0   # a device's interval when its report does not say


@dataclass(frozen=True)
class TokenServerConfig:
    file: str
    host: str
    port: int
    workers: int
    database_url: str
    db_pool_size: int
    tls_cert_file: str | None
    tls_key_file: str | None
    upstream: UpstreamConfig
    policy: Policy
    log_level: str
    fleet: FleetConfig = FleetConfig()


def default_config_path(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_config(path: str | Path) -> TokenServerConfig:
    """Read and validate the whole file; raises ConfigError naming the first bad key."""
    file = str(path)
    return parse_config(load_yaml_mapping(path), file)


def parse_config(data: dict, file: str) -> TokenServerConfig:
    root = Section(data, file)
    host = root.str("host", "127.0.0.1")
    port = root.int("port", 8443, min=0, max=65535)
    workers = root.int("workers", 2, min=1, max=64)
    database_url = root.str("database_url", DEFAULT_DATABASE_URL)
    if not database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise root.error("database_url", "must start with sqlite:/// or postgresql://")
    db_pool_size = root.int("db_pool_size", 4, min=1, max=64)
    log_level = root.str("log_level", "info", choices=("debug", "info", "warning", "error"))
    fleet = _parse_fleet(root)

    tls = root.section("tls")
    cert = tls.str("cert_file", None, nullable=True)
    key = tls.str("key_file", None, nullable=True)
    if (cert is None) != (key is None):
        raise tls.error("key_file" if key is None else "cert_file",
                        "cert_file and key_file must be set together")
    tls.done()

    base_url = root.str("openai_base_url", "https://api.openai.com").rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise root.error("openai_base_url", f"must be an http(s) URL, got {base_url!r}")
    api_key_env = root.str("api_key_env", "OPENAI_API_KEY")
    api_key_file = root.str("api_key_file", None, nullable=True)
    up = root.section("upstream")
    upstream = UpstreamConfig(
        base_url=base_url, api_key_env=api_key_env, api_key_file=api_key_file,
        connect_timeout_s=up.float("connect_timeout_s", 3.0, min=0.1, max=60),
        timeout_s=up.float("timeout_s", 10.0, min=0.1, max=120),
        retries=up.int("retries", 2, min=0, max=10),
        backoff_s=up.float("backoff_s", 0.2, min=0, max=10),
        max_retry_after_s=up.float("max_retry_after_s", 2.0, min=0, max=60),
    )
    up.done()

    limits = root.section("limits")
    policy = parse_policy(root.section("policy"), limits)
    limits.done()
    root.done()
    return TokenServerConfig(
        file=file, host=host, port=port, workers=workers, database_url=database_url,
        db_pool_size=db_pool_size, tls_cert_file=cert, tls_key_file=key, upstream=upstream,
        policy=policy, log_level=log_level, fleet=fleet)


def _parse_fleet(root: Section) -> FleetConfig:
    admin_token_file = root.str("admin_token_file", None, nullable=True)
    sec = root.section("fleet")
    fleet = FleetConfig(admin_token_file=admin_token_file,
                        status_min_interval_s=sec.float("status_min_interval_s", 10.0, min=0.1, max=3600),
                        status_burst=sec.int("status_burst", 3, min=1, max=100),
                        default_status_interval_s=sec.float("default_status_interval_s", 300.0, min=1, max=86400))
    sec.done()
    return fleet


MIN_ADMIN_TOKEN_CHARS = 16


def read_admin_token(config: TokenServerConfig) -> bytes | None:
    """The admin bearer token from `admin_token_file`, or None when the admin API is off.

    Errors say which file and why, never what it holds.
    """
    path = config.fleet.admin_token_file
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(config.file, "admin_token_file",
                          f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(config.file, "admin_token_file", f"{path} is not UTF-8 text") from None
    if len(token) < MIN_ADMIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(config.file, "admin_token_file",
                          f"{path} must hold one token of at least {MIN_ADMIN_TOKEN_CHARS} characters "
                          "without spaces (e.g. `openssl rand -hex 32`)")
    return token.encode("utf-8")


def resolve_api_key(config: TokenServerConfig, environ: Mapping[str, str] = os.environ) -> str:
    """The OpenAI key from `api_key_file` if set, else from the env var named by `api_key_env`.

    Errors say where the key was looked for, never what was found.
    """
    up = config.upstream
    if up.api_key_file:
        try:
            key = Path(up.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(config.file, "api_key_file",
                              f"cannot read {up.api_key_file}: {exc.strerror or type(exc).__name__}") from None
        except UnicodeDecodeError:
            raise ConfigError(config.file, "api_key_file", f"{up.api_key_file} is not UTF-8 text") from None
        if not key:
            raise ConfigError(config.file, "api_key_file", f"{up.api_key_file} is empty")
        return key
    key = environ.get(up.api_key_env, "").strip()
    if not key:
        raise ConfigError(config.file, "api_key_env",
                          f"environment variable {up.api_key_env} is not set or empty "
                          "(or set api_key_file)")
    return key
