"""The PulseAudio rig's command-line interface for the audio rows (killing one of our streams is
what a USB device unplugged mid-stream looks like to the client), and the DNS row's inner half."""

import os
import socket

import pytest


class StreamKiller:
    def __init__(self, rig, socket_path: str) -> None:
        self.rig, self.socket_path = rig, socket_path

    def kill(self, kind: str) -> None:
        """kind: "sink-input" (our speaker) or "source-output" (our mic); ours is the native-protocol one."""
        rows = [line.split("\t") for line in self.rig.pactl("list", "short", kind + "s").splitlines()]
        ours = [row[0] for row in rows if "protocol-native.c" in row]
        assert len(ours) == 1, rows
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            sock.sendall(f"kill-{kind} {ours[0]}\n".encode())
            sock.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := sock.recv(4096):
                out += chunk
        assert not out.strip(), out


@pytest.fixture(scope="module")
def stream_killer(pulse_rig):
    path = f"{pulse_rig.dir}/cli-faults"
    module = pulse_rig.pactl("load-module", "module-cli-protocol-unix", f"socket={path}").strip()
    yield StreamKiller(pulse_rig, path)
    pulse_rig.pactl("unload-module", module)


IN_NETNS = "PIVOICE_FAULTS_IN_NETNS"
INSIDE_NETNS_ONLY = "test_dns_failure_inside_a_private_netns"


def pytest_collection_modifyitems(config, items):
    """The DNS row's body runs only inside the private network namespace its outer test makes."""
    if os.environ.get(IN_NETNS) == "1":
        return
    inner = [item for item in items if item.name == INSIDE_NETNS_ONLY]
    if inner:
        config.hook.pytest_deselected(items=inner)
        items[:] = [item for item in items if item.name != INSIDE_NETNS_ONLY]
