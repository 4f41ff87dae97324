"""`wav:` devices are checked when the daemon builds them and by `pivoice check-config` (preflight):
a mic that is missing or not a 16-bit WAV, a speaker whose file cannot be written, each named by
config key and direction."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import pytest
import yaml

from pivoice import preflight
from pivoice.audio.playback import WavSpeaker, check_wav_output
from pivoice.audio.ports import WavDeviceError
from pivoice.settings import ConfigError

NOBODY = 65534


def write_mic(path: Path, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(width), w.setframerate(16000), w.writeframes(bytes(320 * width))
    return path


def write_config(work: Path, mic: str, speaker: str) -> Path:
    secret = work / "device-secret"
    secret.write_text("dsec-0123456789abcdef\n")
    secret.chmod(0o644)   # the unprivileged runs below read it too
    path = work / "pivoice.yaml"
    path.write_text(yaml.safe_dump({
        "tokens": {"backend_url": "http://127.0.0.1:9", "device_id": "kitchen", "secret_file": str(secret)},
        "audio": {"input": {"device": mic}, "output": {"device": speaker}}}))
    return path


def no_unit(unit):
    return None


@pytest.fixture
def shared_dir():
    """A directory other users may enter (pytest's tmp_path is 0700), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pivoice-wav-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pivoice(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "pivoice", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "HOME": "/"})


@pytest.mark.parametrize("mic,problem", [
    ("missing.wav", "no such file"),
    ("8bit.wav", "8-bit samples; need 16-bit signed PCM"),
])
def test_check_runnable_names_the_key_of_a_bad_wav_mic(tmp_path, mic, problem):
    write_mic(tmp_path / "8bit.wav", width=1)
    path = write_config(tmp_path, f"wav:{tmp_path / mic}", f"wav:{tmp_path / 'reply.wav'}")
    with pytest.raises(ConfigError) as err:
        preflight.check_runnable(path, read_unit=no_unit)
    assert err.value.key_path == "audio.input.device"
    assert str(err.value) == f"{path}: audio.input.device: wav:{tmp_path / mic}: {problem}"


def test_check_runnable_names_the_key_of_a_wav_speaker_without_a_directory(tmp_path):
    mic = write_mic(tmp_path / "q.wav")
    reply = tmp_path / "no" / "dir" / "reply.wav"
    path = write_config(tmp_path, f"wav:{mic}", f"wav:{reply}")
    with pytest.raises(ConfigError) as err:
        preflight.check_runnable(path, read_unit=no_unit)
    assert str(err.value) == f"{path}: audio.output.device: wav:{reply}: directory {reply.parent} does not exist"
    assert not reply.parent.exists()   # checked, nothing created
    good = write_config(tmp_path, f"wav:{mic}", f"wav:{tmp_path / 'reply.wav'}")
    assert preflight.check_runnable(good, read_unit=no_unit).notes == []
    assert not (tmp_path / "reply.wav").exists()


def test_check_config_on_a_read_only_file_system_fails_naming_the_key(shared_dir):
    # what ProtectSystem=strict does to a wav: output outside the unit's writable paths
    mic = write_mic(shared_dir / "q.wav")
    ro = shared_dir / "ro"
    ro.mkdir()
    path = write_config(shared_dir, f"wav:{mic}", f"wav:{ro}/reply.wav")
    script = f'mount -t tmpfs -o ro none {ro} && exec "$@"'
    result = pivoice("check-config", str(path), prefix=("unshare", "--mount", "sh", "-c", script, "sh"))
    assert result.returncode == 2, result
    assert (f"pivoice: config error: {path}: audio.output.device: wav:{ro}/reply.wav: directory {ro} "
            "not writable (read-only file system)") in result.stderr


@pytest.fixture(scope="module")
def nobody_can_run_pivoice():
    """These tests run our Python as an unprivileged user; a checkout under a 0700 home (or /root, as in
    the arm64 chroot) is out of that user's reach, which says nothing about the code under test."""
    probe = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
                            "-c", "import pivoice"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot run {sys.executable} with pivoice importable here: {probe.stderr[-200:]}")


def test_a_directory_the_user_cannot_write_fails_the_speaker_and_is_a_note_in_check_config(shared_dir, nobody_can_run_pivoice):
    mic = write_mic(shared_dir / "q.wav")
    mic.chmod(0o644)
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o755)   # root's: nobody may enter but not create
    path = write_config(shared_dir, f"wav:{mic}", f"wav:{locked}/reply.wav")
    as_nobody = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups")
    built = subprocess.run([*as_nobody, sys.executable, "-c",
                            "import sys; from pivoice.audio.playback import WavSpeaker\n"
                            "try:\n    WavSpeaker(sys.argv[1])\nexcept Exception as exc:\n    print(exc)",
                            f"{locked}/reply.wav"], capture_output=True, text=True, timeout=60)
    expected = f"audio.output.device wav:{locked}/reply.wav: directory {locked} not writable by this user (uid {NOBODY})"
    assert built.stdout.strip() == expected, built
    checked = pivoice("check-config", str(path), prefix=as_nobody)
    # the daemon's user may differ from whoever runs check-config: said, but not fatal
    assert checked.returncode == 0, checked
    assert f"note: {expected}; fine if the daemon's user may" in checked.stdout


def test_an_unreadable_mic_names_the_key_for_an_unprivileged_user(shared_dir, nobody_can_run_pivoice):
    mic = write_mic(shared_dir / "q.wav")
    mic.chmod(0o600)
    result = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
                             "-c", "import sys; from pivoice.audio.capture import WavMic\n"
                             "try:\n    WavMic(sys.argv[1])\nexcept Exception as exc:\n    print(exc)", str(mic)],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"audio.input.device wav:{mic}: not readable by this user (uid {NOBODY})"


def test_the_units_runtime_directory_may_be_missing_before_the_first_start(tmp_path):
    mic = write_mic(tmp_path / "q.wav")
    run_dir = Path("/run") / f"pivoice-wavtest-{os.getpid()}"
    assert not run_dir.exists()
    path = write_config(tmp_path, f"wav:{mic}", f"wav:{run_dir}/reply.wav")
    unit = tmp_path / "pivoice.service"
    unit.write_text(f"[Service]\nExecStart=/bin/true\nRuntimeDirectory={run_dir.name}\n")
    notes = preflight.check_runnable(path, unit_file=unit).notes
    assert notes == [f"audio.output.device wav:{run_dir}/reply.wav: {run_dir} does not exist yet; systemd creates "
                     f"it when it starts the daemon (RuntimeDirectory={run_dir.name} in {unit})"]
    unit.write_text("[Service]\nExecStart=/bin/true\nRuntimeDirectory=something-else\n")
    with pytest.raises(ConfigError, match=f"audio.output.device: wav:{run_dir}/reply.wav: directory {run_dir} "
                                          "does not exist"):
        preflight.check_runnable(path, unit_file=unit)


def test_wav_speaker_refuses_bad_paths_when_built_and_when_opened(tmp_path):
    with pytest.raises(WavDeviceError, match=f"^audio.output.device wav:{tmp_path}: is a directory, not a file$"):
        WavSpeaker(tmp_path)
    check_wav_output(str(tmp_path / "reply.wav"))   # fine, and nothing written
    assert not (tmp_path / "reply.wav").exists()
    gone = tmp_path / "gone"
    gone.mkdir()
    spk = WavSpeaker(gone / "reply.wav")
    gone.rmdir()                                     # removed after start-up: the press says so
    with pytest.raises(WavDeviceError) as err:
        spk.open(lambda: None)
    assert str(err.value) == f"audio.output.device wav:{gone}/reply.wav: cannot write it (No such file or directory)"
    spk.close()


def test_pivoice_run_with_a_missing_wav_mic_names_the_key_and_exits(tmp_path):
    reply = tmp_path / "reply.wav"
    path = write_config(tmp_path, f"wav:{tmp_path}/missing.wav", f"wav:{reply}")
    data = yaml.safe_load(path.read_text())
    data.update(button={"pin": "GPIO17", "pin_factory": "mock"},
                control={"socket_path": str(tmp_path / "control.sock")})
    path.write_text(yaml.safe_dump(data))
    result = pivoice("run", "--config", str(path))
    assert result.returncode == 1, result
    assert f"cannot start: audio.input.device wav:{tmp_path}/missing.wav: no such file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "control.sock").exists()
