import socket

import pytest

from support.fixtures_audio import make_speech_wav

SPEECH_TEXT = "Hello, what is the weather like today in Berlin?"
SPEECH_LEAD_S = 1.0


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory):
    """16 kHz mono speech: 1.0 s of silence, ~2.8 s of speech, 1.5 s of silence."""
    return make_speech_wav(tmp_path_factory.mktemp("speech") / "speech16k.wav", SPEECH_TEXT,
                           rate_hz=16000, lead_silence_s=SPEECH_LEAD_S, tail_silence_s=1.5)


class PulseCli:
    """Commands for the rig's PulseAudio command-line interface (what `pacmd` would send, but pacmd
    wants a pid file the rig does not write): how the fault tests kill one of our streams, which is
    what a USB device unplugged mid-stream looks like to the client (pactl 16 has no kill command)."""

    def __init__(self, rig) -> None:
        self.rig = rig

    def run(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.rig.dir / "cli"))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)   # the CLI answers, then closes at end of input
            out = b""
            while chunk := sock.recv(4096):
                out += chunk
        return out.decode(errors="replace")

    def our_stream(self, kind: str) -> str:
        """Index of this process's only sink input / source output (not the remap source's own)."""
        rows = [line.split("\t") for line in self.rig.pactl("list", "short", kind + "s").splitlines()]
        ours = [row[0] for row in rows if "protocol-native.c" in row]
        assert len(ours) == 1, rows
        return ours[0]

    def kill_our_stream(self, kind: str) -> None:
        """kind: "sink-input" (our speaker) or "source-output" (our mic)."""
        out = self.run(f"kill-{kind} {self.our_stream(kind)}")
        assert not out.strip(), out   # the CLI says nothing on success


@pytest.fixture(scope="session")
def pulse_cli(pulse_rig):
    module = pulse_rig.pactl("load-module", "module-cli-protocol-unix", f"socket={pulse_rig.dir}/cli").strip()
    yield PulseCli(pulse_rig)
    pulse_rig.pactl("unload-module", module)
