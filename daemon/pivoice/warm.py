"""`python -m pivoice.warm`: import what `pivoice run` imports, then exit, opening and starting nothing.

scripts/install runs it as the daemon's user with the unit's PYTHONOPTIMIZE and PYTHONPYCACHEPREFIX,
so the unit's bytecode cache is complete before the first start. `import pivoice.app` alone is not
enough: the composition root imports each edge only when it builds it, and a start that had to compile
the rest peaked at 51.9 MiB instead of 46.6 (plain ALSA). The daemon is built from a throwaway config
(WAV devices, gpiozero's mock pins; tests/daemon/test_daemon_imports.py measures the same build), so no
sound card, GPIO chip or network is touched, and it is discarded unstarted. Main thread.
"""

from __future__ import annotations

import sys
import tempfile
import wave
from pathlib import Path

import yaml


def write_throwaway_config(work: Path) -> Path:
    """A daemon config in `work` that opens nothing real: WAV devices (a 10 ms silent mic file),
    gpiozero's mock pins, loopback URLs nobody listens on, a dummy device secret."""
    with wave.open(str(work / "mic.wav"), "wb") as mic:
        mic.setnchannels(1)
        mic.setsampwidth(2)
        mic.setframerate(16000)
        mic.writeframes(b"\0\0" * 160)
    secret = work / "device-secret"
    secret.write_text("s" * 43 + "\n")
    secret.chmod(0o600)
    config = {
        "button": {"pin": "GPIO17", "pin_factory": "mock"},
        "control": {"socket_path": str(work / "control.sock")},
        "audio": {"input": {"device": f"wav:{work / 'mic.wav'}"},
                  "output": {"device": f"wav:{work / 'reply.wav'}"}},
        "realtime": {"url": "wss://127.0.0.1:9/v1/realtime"},
        "tokens": {"backend_url": "http://127.0.0.1:9", "device_id": "kitchen", "secret_file": str(secret)},
    }
    path = work / "pivoice.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def warm() -> int:
    """Imports the daemon's modules; returns how many modules are loaded."""
    import pivoice.cli   # noqa: F401  the console script's entry point
    from pivoice import app
    from pivoice.config import load

    with tempfile.TemporaryDirectory(prefix="pivoice-warm-") as tmp:
        app.build(load(str(write_throwaway_config(Path(tmp))))).discard()
    "pivoice.local".encode("idna")   # the host name codec the first connect loads
    return len(sys.modules)


if __name__ == "__main__":
    print(f"pivoice.warm: {warm()} modules imported")
