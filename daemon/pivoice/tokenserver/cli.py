"""`pivoice token-server`: run the backend or administer its device registry.

    pivoice token-server serve [--config FILE] [--host H] [--port N] [--workers N] [--ready-file PATH]
    pivoice token-server check-config [--config FILE]
    pivoice token-server devices add|list|revoke|rotate NAME [--config FILE]   (list [--json]: health, usage)
    pivoice token-server devices policy NAME [--show] [--set KEY=VALUE ...] [--unset KEY ...]

New device secrets are printed once on stdout (alone, so `SECRET=$(...)` works) and stored
only as a hash. Runs in the main thread; `serve` supervises uvicorn worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

from pivoice.settings import ConfigError
from pivoice.tokenserver.auth import check_device_name, hash_secret, new_secret
from pivoice.tokenserver.config import (CONFIG_ENV, default_config_path, load_config, read_admin_token,
                                       resolve_api_key)
from pivoice.tokenserver.fleet_cli import print_device_list
from pivoice.tokenserver.policy import POLICY_KEYS, device_policy
from pivoice.tokenserver.registry import Registry, db_errors

PROG = "pivoice token-server"


class CliError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=None,
                        help=f"config file (default: ${CONFIG_ENV} or /etc/pivoice/token-server.yaml)")
    p = argparse.ArgumentParser(prog=PROG, description="Mint OpenAI Realtime client secrets for devices.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the HTTP server")
    serve.add_argument("--host", help="listen address (overrides `host`)")
    serve.add_argument("--port", type=int, help="listen port, 0 = any free port (overrides `port`)")
    serve.add_argument("--workers", type=int, help="worker processes (overrides `workers`)")
    serve.add_argument("--ready-file", help="write the bound port here once every worker serves")
    sub.add_parser("check-config", parents=[common], help="validate the config file and the API key source")
    devices = sub.add_parser("devices", help="manage devices").add_subparsers(dest="action", required=True)
    devices.add_parser("add", parents=[common], help="register a device, print its new secret").add_argument("name")
    devices.add_parser("list", parents=[common], help="list devices with health and today's usage").add_argument(
        "--json", action="store_true", help="print what GET /admin/devices returns")
    devices.add_parser("revoke", parents=[common], help="disable a device at once").add_argument("name")
    devices.add_parser("rotate", parents=[common],
                       help="new secret for a device (old one stops working; re-enables if revoked)"
                       ).add_argument("name")
    pol = devices.add_parser("policy", parents=[common], help="show or change a device's policy overrides")
    pol.add_argument("name")
    pol.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help=f"override a policy key (value is YAML); keys: {', '.join(POLICY_KEYS)}")
    pol.add_argument("--unset", action="append", default=[], metavar="KEY", help="drop an override")
    pol.add_argument("--show", action="store_true", help="print the effective policy (default action)")
    return p


def _open(config_path: str):
    config = load_config(config_path)
    registry = Registry(config.database_url, 1)
    registry.init_schema()
    return config, registry


def _device_name(name: str) -> str:
    reason = check_device_name(name)
    if reason:
        raise CliError(f"invalid device name {name!r}: {reason}")
    return name


def _devices(args: argparse.Namespace, config_path: str) -> int:
    config, registry = _open(config_path)
    try:
        if args.action == "list":
            return print_device_list(registry, config, time.time(), as_json=args.json)
        name = _device_name(args.name)
        if args.action == "add":
            secret = new_secret()
            if not registry.add_device(name, hash_secret(secret), time.time()):
                raise CliError(f"device {name!r} already exists (use `devices rotate {name}` for a new secret)")
            print(f"device {name!r} added; its secret follows on stdout, shown only this once", file=sys.stderr)
            print(secret)
            return 0
        if args.action == "rotate":
            secret = new_secret()
            if not registry.rotate(name, hash_secret(secret), time.time()):
                raise CliError(f"no device named {name!r}")
            print(f"device {name!r} has a new secret (the old one no longer works); shown only this once",
                  file=sys.stderr)
            print(secret)
            return 0
        device = registry.get_device(name)
        if device is None:
            raise CliError(f"no device named {name!r}")
        if args.action == "revoke":
            if not registry.revoke(name, time.time()):
                raise CliError(f"device {name!r} is already revoked")
            print(f"device {name!r} revoked; its next request gets 401", file=sys.stderr)
            return 0
        return _policy(args, config, registry, device)
    finally:
        registry.close()


def _policy(args, config, registry, device) -> int:
    overrides = dict(device.policy)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in POLICY_KEYS:
            raise CliError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(POLICY_KEYS)}")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise CliError(f"--set {key}: value is not valid YAML: {exc}") from None
    for key in args.unset:
        if key not in POLICY_KEYS:
            raise CliError(f"--unset {key!r}: not a policy key ({', '.join(POLICY_KEYS)})")
        overrides.pop(key, None)
    effective = device_policy(config.policy, overrides, device.name)  # validates before storing
    if args.set or args.unset:
        registry.set_policy(device.name, overrides)
        print(f"device {device.name!r}: policy overrides updated ({', '.join(sorted(overrides)) or 'none'})",
              file=sys.stderr)
    if args.show or not (args.set or args.unset):
        print(json.dumps({"device": device.name, "overrides": overrides, "effective": effective.as_dict()},
                         indent=2, sort_keys=True))
    return 0


def _write_ready_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_text(f"{port}\n", encoding="utf-8")
    os.replace(tmp, path)  # atomic: a reader sees no file or the whole port


def _serve(args: argparse.Namespace, config_path: str) -> int:
    from pivoice.sdnotify import SystemdNotifier
    from pivoice.tokenserver.app import setup_logging
    from pivoice.tokenserver.workers import run_workers

    config = load_config(config_path)
    resolve_api_key(config)  # fail here, once, rather than in every worker
    read_admin_token(config)
    setup_logging(config.log_level)
    registry = Registry(config.database_url, 1)
    registry.init_schema()  # once in the parent: concurrent CREATE TABLE in workers can race on PostgreSQL
    registry.close()
    os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    for name, value, lo in (("--port", args.port, 0), ("--workers", args.workers, 1)):
        if value is not None and not (lo <= value <= 65535):
            raise CliError(f"{name} {value}: out of range")
    ready = (lambda port: _write_ready_file(args.ready_file, port)) if args.ready_file else None
    return run_workers(
        host=args.host or config.host, port=config.port if args.port is None else args.port,
        workers=args.workers or config.workers, cert_file=config.tls_cert_file, key_file=config.tls_key_file,
        on_ready=ready, notifier=SystemdNotifier.from_env())   # READY=1 once every worker serves (Type=notify)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    config_path = args.config or default_config_path()
    try:
        if args.command == "serve":
            return _serve(args, config_path)
        if args.command == "check-config":
            config = load_config(config_path)
            resolve_api_key(config)
            read_admin_token(config)
            print(f"{config_path}: OK ({config.workers} workers, database {config.database_url.split(':')[0]}, "
                  f"upstream {config.upstream.base_url})")
            return 0
        return _devices(args, config_path)
    except (ConfigError, CliError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except db_errors() as exc:
        print(f"{PROG}: database error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return 1
