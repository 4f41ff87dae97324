"""A private PulseAudio server with a virtual microphone and speaker, for real-device tests.

PortAudio reaches it through ALSA's `pulse`/`default` PCMs (libasound2-plugins), exactly the
code path a Pi uses with hw devices, only the device is virtual:

* mic: `module-null-sink` `pivoice_mic` (what `feed()` plays into) -> `module-remap-source`
  `pivoice_mic_in` on its monitor, set as the default source. `norewinds=1` matters: without it
  the monitor hands out garbage when a client rewinds.
* speaker: `module-null-sink` `pivoice_spk`, the default sink; `record()` runs parec on its monitor.

Null sinks are clocked by the system timer, so both run in real time. With the mic sink at the
capture rate and the speaker sink at the playback rate, samples come back bit-exact.

The server runs as root (`-n` = no default.pa, so no stream-restore/udev/suspend modules) with its
runtime dir and socket in a private temp dir; `start()` exports PULSE_SERVER so libpulse clients
in this process (PortAudio's ALSA plugin) and child processes use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

TOOLS = ("pulseaudio", "pactl", "paplay", "parec")


class PulseRig:
    MIC_SINK = "pivoice_mic"
    MIC_SOURCE = "pivoice_mic_in"
    SPEAKER_SINK = "pivoice_spk"

    def __init__(self, mic_rate_hz: int = 16000, speaker_rate_hz: int = 48000, speaker_channels: int = 2) -> None:
        self.mic_rate_hz, self.speaker_rate_hz, self.speaker_channels = mic_rate_hz, speaker_rate_hz, speaker_channels
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._old_server: str | None = None

    @staticmethod
    def available() -> bool:
        return all(shutil.which(tool) for tool in TOOLS)

    @property
    def server(self) -> str:
        return f"unix:{self.dir}/native"

    def env(self) -> dict[str, str]:
        return {**os.environ, "PULSE_SERVER": self.server, "PULSE_RUNTIME_PATH": str(self.dir),
                "HOME": str(self.dir), "XDG_RUNTIME_DIR": str(self.dir)}

    def pactl(self, *args: str, timeout_s: float = 5.0) -> str:
        return subprocess.run(["pactl", *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout_s, check=True).stdout

    def start(self, timeout_s: float = 10.0) -> "PulseRig":
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.dir = Path(tempfile.mkdtemp(prefix="pivoice-pulse-"))
        modules = [
            f"module-native-protocol-unix socket={self.dir}/native auth-anonymous=1",
            f"module-null-sink sink_name={self.MIC_SINK} rate={self.mic_rate_hz} channels=1 norewinds=1"
            f" sink_properties=device.description={self.MIC_SINK}",
            f"module-remap-source source_name={self.MIC_SOURCE} master={self.MIC_SINK}.monitor channels=1"
            f" source_properties=device.description={self.MIC_SOURCE}",
            f"module-null-sink sink_name={self.SPEAKER_SINK} rate={self.speaker_rate_hz}"
            f" channels={self.speaker_channels} norewinds=1 sink_properties=device.description={self.SPEAKER_SINK}",
        ]
        cmd = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
               "--use-pid-file=no", "--log-target=stderr", "--log-level=error"]
        for module in modules:
            cmd += ["-L", module]
        self._log = open(self.dir / "pulseaudio.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.pactl("info", timeout_s=2.0)
                break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (self.dir / "pulseaudio.log").read_text(errors="replace")
                    self.stop()
                    raise RuntimeError(f"PulseAudio did not come up: {log_text[-2000:]}")
                time.sleep(0.1)
        self.pactl("set-default-source", self.MIC_SOURCE)
        self.pactl("set-default-sink", self.SPEAKER_SINK)
        self._old_server = os.environ.get("PULSE_SERVER")
        os.environ["PULSE_SERVER"] = self.server
        return self

    def feed(self, wav_path: str | Path) -> subprocess.Popen:
        """Play a WAV into the virtual mic; wait() on the result to know it has been fed."""
        return subprocess.Popen(["paplay", "-d", self.MIC_SINK, str(wav_path)], env=self.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def record(self, path: str | Path, rate_hz: int | None = None, channels: int = 1) -> subprocess.Popen:
        """Record the virtual speaker into a WAV; stop with `stop_recording()` (SIGINT finalizes it)."""
        return subprocess.Popen(["parec", "--latency-msec=20", "-d", f"{self.SPEAKER_SINK}.monitor",
                                 "--format=s16le", f"--rate={rate_hz or self.speaker_rate_hz}",
                                 f"--channels={channels}", "--file-format=wav", str(path)],
                                env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @staticmethod
    def stop_recording(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self._log.close()
        if os.environ.get("PULSE_SERVER") == (self.server if self.dir else None):
            if self._old_server is None:
                os.environ.pop("PULSE_SERVER", None)
            else:
                os.environ["PULSE_SERVER"] = self._old_server
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@pytest.fixture(scope="session")
def pulse_rig():
    """Session-wide PulseRig; import it into a conftest.py: `from support.pulse import pulse_rig`."""
    if not PulseRig.available():
        missing = ", ".join(t for t in TOOLS if not shutil.which(t))
        message = f"PulseAudio test rig needs {missing} (apt-get install pulseaudio pulseaudio-utils)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    rig = PulseRig().start()
    try:
        yield rig
    finally:
        rig.stop()
