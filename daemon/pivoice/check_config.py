"""`pivoice check-config FILE`: the config checks `pivoice run` makes before it starts, as a command.

Main thread; a one-shot command.
"""

from __future__ import annotations

import argparse
import json
import sys

from pivoice import config
from pivoice.settings import ConfigError


def session_update_text(cfg: config.Config) -> str:
    """The `session.update` event the daemon sends when a session opens, as pretty JSON.

    The daemon adds an `event_id` to each event it sends. The same session, without the local tools,
    goes with every key request, where the token backend's policy may refuse a field it pins."""
    from pivoice.app import session_to_send
    return json.dumps({"type": "session.update", "session": session_to_send(cfg)}, indent=2)


def main(argv: list[str]) -> int:
    """`pivoice check-config FILE`: what `pivoice run` validates before it starts (the file, the device
    secret or its systemd credential source, the backend URL and CA bundle). Exit 0 and a summary if
    runnable, 2 and the error otherwise."""
    from pivoice import preflight
    parser = argparse.ArgumentParser(prog="pivoice check-config", description=main.__doc__)
    parser.add_argument("file")
    parser.add_argument("--unit-file", help="unit file to read LoadCredential= from when tokens.secret_file is "
                                            "a systemd credential (default: `systemctl cat UNIT`)")
    parser.add_argument("--file-only", action="store_true",
                        help="check the file alone, not the secret (e.g. on a machine that is not the Pi)")
    parser.add_argument("--print-session", action="store_true",
                        help="after the summary, print the session.update event the daemon will send (GA "
                             "shape, JSON), e.g. to see how beta-shaped session keys were mapped")
    args = parser.parse_args(argv)
    try:
        if args.file_only:
            cfg, notes = config.load(args.file), []
        else:
            runnable = preflight.check_runnable(args.file, unit_file=args.unit_file)
            cfg, notes = runnable.cfg, runnable.notes
    except ConfigError as exc:
        print(f"pivoice: config error: {exc}", file=sys.stderr)
        return 2
    td = cfg.session.turn_detection
    print(f"{cfg.file}: ok (model {cfg.session.model}, input {cfg.audio.input.device}, "
          f"output {cfg.audio.output.device}, turn detection {td.type if td else 'manual'}, "
          f"backend {cfg.tokens.backend_url})")
    if cfg.session.beta_mapped:
        notes = [*notes, "beta-shaped session keys mapped to the GA session: "
                 + ", ".join(f"{beta} -> {ga}" for beta, ga in cfg.session.beta_mapped)]
    for note in notes:
        print(f"  note: {note}")
    if args.print_session:
        print(session_update_text(cfg))
    return 0
