"""The daemon's peak RSS with real PortAudio devices on plain ALSA (no sound server, no ALSA plugins).

A demo-like conversation (offline stack, one press, spoken question, spoken reply) where the mic
and the speaker are ALSA `file` PCMs over `null` from a minimal alsa.conf given through
ALSA_CONFIG_PATH, so alsa-lib loads none of the libasound2-plugins modules (pulse, jack, a52, ...)
that the distribution's alsa.conf.d pulls in. The file PCMs read and write named pipes, which we
feed and drain at real-time pace: that is what paces PortAudio, since `null` alone runs at
infinite speed. Prints one JSON object (also written to <out>/result.json); exit status 1 if no reply reached the speaker.

Used by `scripts/check-arm64` (in the arm64 chroot) and runnable on its own with the checkout's
.venv: `.venv/bin/python scripts/lib/check_arm64_alsa_rss.py [--out DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))   # the process launchers are shared with the e2e tests

from support.certs import make_tls, trust_dir       # noqa: E402
from support.fixtures_audio import make_speech_wav  # noqa: E402
from support.stack import offline_stack, running    # noqa: E402

QUESTION = "Hello! What can you tell me about the weather in the kitchen today?"
MIC_RATE_HZ = 16000
CHUNK_S = 0.02
RIG_PERIOD_MS = 40   # the mic's ALSA period on this rig (see main)
ALSA_CONF = """\
pcm.!default {{ type asym; playback.pcm "speaker"; capture.pcm "mic" }}
pcm.mic {{ type file; slave.pcm "null"; file "/dev/null"; infile "{mic}"; format "raw" }}
pcm.speaker {{ type file; slave.pcm "null"; file "{speaker}"; format "raw" }}
pcm.null {{ type null }}
"""


def unit_environment() -> dict[str, str]:
    """The `Environment=` settings of systemd/pivoice.service (e.g. MALLOC_ARENA_MAX): the figure is
    for the daemon as the shipped unit runs it."""
    env = {}
    for line in (ROOT / "systemd" / "pivoice.service").read_text().splitlines():
        if line.startswith("Environment="):
            for item in line[len("Environment="):].split():
                key, _, value = item.partition("=")
                env[key] = value
    return env


def pyc_count(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("*.pyc")) if cache.is_dir() else 0


class PipeEnds:
    """Feeds the mic pipe and drains the speaker pipe at real-time pace; runs two threads of its own.

    alsa-lib opens the pipes whenever PortAudio opens the PCMs (also while probing devices), so
    each thread reopens its end after the other side closed; the question starts anew each time.
    """

    def __init__(self, mic: Path, speaker: Path, question_pcm: bytes, speaker_bytes_per_s: int) -> None:
        self._mic, self._speaker, self._question = mic, speaker, question_pcm
        self._speaker_rate = speaker_bytes_per_s
        self._stop = threading.Event()
        self.speaker_nonzero_bytes = 0
        self._threads = [threading.Thread(target=self._feed, daemon=True),
                         threading.Thread(target=self._drain, daemon=True)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for path, mode in ((self._mic, os.O_RDONLY), (self._speaker, os.O_WRONLY)):
            try:   # unblock a thread still waiting in open() for the other end
                os.close(os.open(path, mode | os.O_NONBLOCK))
            except OSError:
                pass

    def _feed(self) -> None:
        chunk = int(MIC_RATE_HZ * 2 * CHUNK_S)
        while not self._stop.is_set():
            try:
                with open(self._mic, "wb", buffering=0) as pipe:
                    start, sent = time.monotonic(), 0
                    while not self._stop.is_set():
                        pipe.write(self._question[sent:sent + chunk].ljust(chunk, b"\0"))   # then silence
                        sent += chunk
                        time.sleep(max(0.0, start + sent / (MIC_RATE_HZ * 2) - time.monotonic()))
            except (BrokenPipeError, OSError):
                time.sleep(0.01)

    def _drain(self) -> None:
        chunk = int(self._speaker_rate * CHUNK_S)
        while not self._stop.is_set():
            with open(self._speaker, "rb", buffering=0) as pipe:
                start, got = time.monotonic(), 0
                while not self._stop.is_set():
                    data = pipe.read(chunk)
                    if not data:
                        break
                    got += len(data)
                    self.speaker_nonzero_bytes += len(data) - data.count(0)
                    time.sleep(max(0.0, start + got / self._speaker_rate - time.monotonic()))


def peak_rss_kib(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            fields[key] = int(value.split()[0])
    return fields


def loaded_libraries(pid: int) -> list[str]:
    libs = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and ".so" in parts[5]:
            libs.add(Path(parts[5]).name)
    return sorted(libs)


def converse(stack, config: dict, env: dict) -> dict:
    """One daemon, one press, one conversation: its memory figures, libraries and timeline."""
    out: dict = {}
    with running(stack.daemon(config, env=env)) as daemon:
        pid = daemon.process.pid
        out["after_start_kib"] = peak_rss_kib(pid)
        mark = len(daemon.timeline())   # the timeline file is appended to: a reused --out has old runs
        daemon.ctl("press")
        daemon.wait_for("ended", timeout_s=120, after=mark)
        out["after_conversation_kib"] = peak_rss_kib(pid)
        out["libraries"] = loaded_libraries(pid)
        out["timeline"] = daemon.timeline()[mark:]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "out" / "alsa-rss"))
    parser.add_argument("--distro-alsa-conf", action="store_true",
                        help="read the distribution's alsa.conf (and its conf.d plugins) before ours, for comparison")
    parser.add_argument("--tls", action="store_true",
                        help="as on a Pi: the backend on https:// and the session on wss://, their test CA trusted "
                             "through a hashed CA directory (SSL_CERT_DIR) holding the system's CAs too")
    args = parser.parse_args()
    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    mic, speaker = work / "mic.fifo", work / "speaker.fifo"
    for fifo in (mic, speaker):
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
    conf = work / "alsa.conf"
    conf.write_text(ALSA_CONF.format(mic=mic, speaker=speaker))
    question = make_speech_wav(work / "question.wav", QUESTION, rate_hz=MIC_RATE_HZ, lead_silence_s=0.2,
                               tail_silence_s=2.5)
    with wave.open(str(question)) as w:
        pcm = w.readframes(w.getnframes())
    ends = PipeEnds(mic, speaker, pcm, speaker_bytes_per_s=24000 * 2)
    ends.start()
    config_path = f"/usr/share/alsa/alsa.conf:{conf}" if args.distro_alsa_conf else str(conf)
    result: dict = {"alsa_config_path": config_path, "unit_environment": unit_environment()}
    env = {**unit_environment(), "ALSA_CONFIG_PATH": config_path}   # as the shipped unit runs it
    cache = work / "pycache"
    if "PYTHONPYCACHEPREFIX" in env:   # the unit's cache directory, kept here across runs as on a device
        env["PYTHONPYCACHEPREFIX"] = str(cache)
        env["PYTHONDONTWRITEBYTECODE"] = ""   # empty is unset for Python; the unit does not set it
    servers: tuple = ()
    policy: dict = {}
    if args.tls:
        made = make_tls(work / "tls")
        os.environ.pop("SSL_CERT_FILE", None)
        os.environ["SSL_CERT_DIR"] = str(trust_dir(work / "tls", made.ca_file))   # the servers and the daemon
        servers = ("--tls-cert", str(made.cert_file), "--tls-key", str(made.key_file))
        policy = {"tls": {"cert_file": str(made.cert_file), "key_file": str(made.key_file)}}
    result["tls"] = args.tls
    try:
        with offline_stack(work, *servers, **policy) as stack:
            config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": 2})
            # A rig limit, not the daemon's: `null` under the `file` PCM is infinitely fast, and the
            # plugin fills each mmap area with one read() of the pipe, leaving stale samples where the
            # pipe held less. With 40 ms periods under 100 ms reads the pipe mostly holds enough for
            # the dev server's VAD to hear the question end; with the default period of one block it
            # never does. (A real device's avail is what it has captured.) No buffer the RSS sees
            # depends on the period.
            config["audio"]["input"]["period_ms"] = RIG_PERIOD_MS
            result["audio_input_period_ms"] = RIG_PERIOD_MS
            if "PYTHONPYCACHEPREFIX" in env and pyc_count(cache) == 0:
                # a device's first start after an install compiles the bytecode once; the figure is
                # for every start after it, but the first one's peak is reported too
                first = converse(stack, config, env)
                result["first_start_peak_rss_mib"] = round(first["after_conversation_kib"]["VmHWM"] / 1024, 1)
            result["bytecode_cache_pyc"] = pyc_count(cache)
            measured = converse(stack, config, env)
            result.update((k, v) for k, v in measured.items() if k != "timeline")
            timeline = measured["timeline"]
    finally:
        ends.stop()
    result["timeline"] = [e["text"] for e in timeline]
    result["speaker_nonzero_bytes"] = ends.speaker_nonzero_bytes
    result["plugin_libraries"] = [lib for lib in result["libraries"] if lib.startswith("libasound_module")]
    result["peak_rss_mib"] = round(result["after_conversation_kib"]["VmHWM"] / 1024, 1)
    text = json.dumps(result, indent=2)
    (work / "result.json").write_text(text + "\n")
    print(text)
    played = any("reply played" in text for text in result["timeline"])
    return 0 if played and ends.speaker_nonzero_bytes > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
