"""`pivoice` command line: one sub-command per program, each imported only when used.

The token backend and the dev server live in the same package but pull in server
libraries a Pi does not need, so their modules are imported lazily.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, function taking argv, one-line help)
COMMANDS = {
    "run": ("pivoice.app", "main", "run the voice-assistant daemon"),
    "check-config": ("pivoice.check_config", "main", "validate a daemon config file"),
    "doctor": ("pivoice.doctor.cli", "main", "check mic, speaker, button, config, token backend and Realtime"),
    "devices": ("pivoice.audio.devices", "main", "list audio inputs/outputs and their sample rates"),
    "ctl": ("pivoice.control", "main", "press/release the button or read status over the control socket"),
    "token-server": ("pivoice.tokenserver.cli", "main", "run or administer the token backend"),
    "dev-server": ("pivoice.devserver.cli", "main", "run the local Realtime-compatible server"),
}


def usage() -> str:
    lines = ["usage: pivoice COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<14}{help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines.append("\n`pivoice COMMAND --help` describes each command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from pivoice import __version__
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"pivoice: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)
