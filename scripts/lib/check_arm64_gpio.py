"""Run by `scripts/check-arm64` with the installed venv's Python inside the arm64 chroot.

Prints one JSON object (also to the file named by its one argument, if given): whether lgpio imports (the GPIO backend gpiozero prefers on a Pi), which
factory class `button.pin_factory: lgpio` resolves to, and what each way of choosing lgpio says
when there is no GPIO chip (the chroot has none). Exit status 1 if lgpio does not import or the
factory is not gpiozero's LGPIOFactory.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from importlib.metadata import version


def _error(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__name__}: {exc}"


def main() -> int:
    report: dict = {"python": sys.version.split()[0], "machine": os.uname().machine}
    try:
        import lgpio
        report["lgpio"] = {"imported": True, "version": version("lgpio"), "file": lgpio.__file__}
    except ImportError as exc:
        report["lgpio"] = {"imported": False, "error": _error(exc)}
    report["gpiozero_version"] = version("gpiozero")

    from gpiozero import Button, Device
    from pivoice.button import make_pin_factory

    # The daemon's own path: button.pin_factory: lgpio -> gpiozero's entry point -> the class.
    try:
        factory = make_pin_factory("lgpio")
        report["daemon_factory"] = {"class": type(factory).__name__, "opened": True}
        factory.close()
    except Exception as exc:   # not a Pi: the class is found, its constructor fails
        classes = []   # which factory classes' constructors the error (or the one it wraps) passed through
        link: BaseException | None = exc
        while link is not None:
            tb = link.__traceback__
            while tb:
                owner = tb.tb_frame.f_locals.get("self")
                if owner is not None and type(owner).__module__.startswith("gpiozero.pins"):
                    classes.append(type(owner).__name__)
                tb = tb.tb_next
            link = link.__cause__ or link.__context__
        report["daemon_factory"] = {"opened": False, "error": _error(exc), "constructing": sorted(set(classes)),
                                    "is_lgpio_factory": "LGPIOFactory" in classes}

    # What lgpio itself says when asked for the chip gpiozero's LGPIOFactory opens (chip 0).
    if report["lgpio"]["imported"]:
        try:
            handle = lgpio.gpiochip_open(0)
            report["lgpio_chip0"] = {"opened": True}
            lgpio.gpiochip_close(handle)
        except Exception as exc:
            report["lgpio_chip0"] = {"opened": False, "error": _error(exc)}

    # gpiozero's own choice: GPIOZERO_PIN_FACTORY=lgpio, then no setting at all (its fallback order).
    for label, env_value in (("env_lgpio", "lgpio"), ("gpiozero_default", None)):
        if env_value is None:
            os.environ.pop("GPIOZERO_PIN_FACTORY", None)
        else:
            os.environ["GPIOZERO_PIN_FACTORY"] = env_value
        Device.pin_factory = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                button = Button(17)
                report[label] = {"opened": True, "factory": type(button.pin_factory).__name__}
                button.close()
            except Exception as exc:
                report[label] = {"opened": False, "error": _error(exc)}
        report[label]["warnings"] = [str(w.message) for w in caught]

    text = json.dumps(report, indent=2)
    if len(sys.argv) > 1:   # where the caller reads it back, apart from anything printed on stderr
        with open(sys.argv[1], "w") as f:
            f.write(text + "\n")
    print(text)
    ok = report["lgpio"]["imported"] and (report["daemon_factory"].get("class") == "LGPIOFactory"
                                          or report["daemon_factory"].get("is_lgpio_factory"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
