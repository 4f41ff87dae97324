"""`pivoice doctor`: run the setup checks in order and print one line per check (or JSON).

Checks that depend on an earlier failure are skipped with the reason. Exit status 1 when any
check fails, 0 otherwise (warnings included), 2 for bad options. Main thread.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Sequence

from pivoice.doctor.report import FAIL, SKIPPED, Context, Result, exit_status, line, to_json

CHECK_NAMES = ("config", "mic", "speaker", "button", "backend", "realtime")
DEFAULT_CONFIG = "/etc/pivoice/pivoice.yaml"


def _needs(check_name: str, ctx: Context, skip: Sequence[str]) -> str | None:
    """Why `check_name` cannot run after what came before, or None."""
    if check_name == "config":
        return None
    if ctx.cfg is None:
        return "the config check was skipped" if "config" in skip else "the config did not load"
    if check_name == "backend" and ctx.secret is None:
        return "no device secret (see config)"
    if check_name == "realtime" and ctx.key is None:
        return "no key from the token backend (its check " + ("failed)" if "backend" in ctx.failed else "was skipped)")
    return None


def run_checks(config_path: str, checks: Sequence[Any], *, skip: Sequence[str] = (),
               emit: Callable[[Result], None] = lambda r: None) -> list[Result]:
    """Run `checks` (objects with `name` and `run(ctx)`) in order; `emit` sees each result as it comes."""
    ctx = Context(config_path)
    results = []
    for check in checks:
        reason = "--skip" if check.name in skip else _needs(check.name, ctx, skip)
        if reason is None:
            try:
                result = check.run(ctx)
            except Exception as exc:   # a check's own bug must not hide the other checks' verdicts
                result = Result(check.name, FAIL, f"the check itself crashed: {type(exc).__name__}: {exc}",
                                "please report this with the output of `pivoice doctor --json`")
        else:
            result = Result(check.name, SKIPPED, f"skipped: {reason}")
        if result.status == FAIL:
            ctx.failed.add(check.name)
        results.append(result)
        emit(result)
    return results


def default_checks(args: argparse.Namespace, stdin_isatty: bool) -> list[Any]:
    from pivoice.doctor.audio import MicCheck, SpeakerCheck
    from pivoice.doctor.backend import BackendCheck
    from pivoice.doctor.button import ButtonCheck
    from pivoice.doctor.configcheck import ConfigCheck
    from pivoice.doctor.realtime import RealtimeCheck
    host: list = []

    def portaudio():   # one PortAudio initialisation for mic and speaker, only if one needs it
        if not host:
            from pivoice.audio.host import PortAudioHost
            host.append(PortAudioHost())
        return host[0]

    wait_s, skip_reason = press_wait(args, stdin_isatty)
    return [ConfigCheck(unit_file=args.unit_file), MicCheck(portaudio, mic_s=args.mic_s), SpeakerCheck(portaudio),
            ButtonCheck(wait_s=wait_s, skip_reason=skip_reason), BackendCheck(), RealtimeCheck()]


def press_wait(args: argparse.Namespace, stdin_isatty: bool) -> tuple[float | None, str]:
    """The press test waits only when someone can be there: with a terminal, or when asked to by
    --button-timeout-s (a script that knows someone presses). --no-button always skips it."""
    if args.no_button:
        return None, "--no-button"
    if args.button_timeout_s is not None:
        return args.button_timeout_s, ""
    if not stdin_isatty:
        return None, "stdin is not a terminal; --button-timeout-s N waits anyway"
    from pivoice.doctor.button import DEFAULT_TIMEOUT_S
    return DEFAULT_TIMEOUT_S, ""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pivoice doctor",
        description="Check this device's setup: config and secret, mic, speaker, button, token backend and "
                    "Realtime endpoint. One line per check with a fix for anything not ok; exit 1 on any FAIL.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"daemon config (default {DEFAULT_CONFIG})")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of {check, status, detail, remedy, data}; status is "
                             "ok, warn, fail or skipped")
    parser.add_argument("--no-button", action="store_true", help="do not wait for a button press")
    parser.add_argument("--button-timeout-s", type=float, default=None,
                        help="wait this long for a press (default 10 s on a terminal; without a terminal the "
                             "press test is skipped unless this is given)")
    parser.add_argument("--mic-s", type=float, default=2.0, help="seconds of mic level meter (default 2)")
    parser.add_argument("--skip", default="", help=f"comma-separated checks to skip: {','.join(CHECK_NAMES)}")
    parser.add_argument("--unit-file", help="unit file whose LoadCredential= names the device secret's source "
                                            "(default: `systemctl cat pivoice.service`)")
    args = parser.parse_args(argv)
    args.skip = [s.strip() for s in args.skip.split(",") if s.strip()]
    unknown = [s for s in args.skip if s not in CHECK_NAMES]
    if unknown:
        parser.error(f"--skip: unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECK_NAMES)})")
    if args.mic_s <= 0 or (args.button_timeout_s is not None and args.button_timeout_s <= 0):
        parser.error("--mic-s and --button-timeout-s must be positive")
    return args


def main(argv: list[str], *, checks: Sequence[Any] | None = None, stdin_isatty: bool | None = None) -> int:
    args = parse_args(argv)
    # warnings from the code under check (e.g. a device rate fallback) go to stderr, off the JSON
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    isatty = sys.stdin is not None and sys.stdin.isatty() if stdin_isatty is None else stdin_isatty
    chosen = list(checks) if checks is not None else default_checks(args, isatty)
    emit = (lambda r: None) if args.json else (lambda r: print(line(r), flush=True))
    try:
        results = run_checks(args.config, chosen, skip=args.skip, emit=emit)
    except KeyboardInterrupt:
        print("pivoice doctor: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(to_json(results))
    return exit_status(results)
