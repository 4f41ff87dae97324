"""The bench's single-purpose scenarios: barge-in press -> speaker silent, the parrot round trip,
and peak RSS on plain ALSA (scripts/lib/check_arm64_alsa_rss.py). Main thread only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_audio import MONITOR_LATENCY_MS, SpeakerMonitor, envelope_correlation, silent_after_s, \
    waveform_correlation
from bench_probes import median_max

ROOT = Path(__file__).resolve().parents[2]
PRESS_AFTER_REPLY_S = 0.4   # the press comes this long after the reply (a 1 s tone) started
SILENT_WINDOW_S = 1.5       # the speaker must stay silent this long after the press (no reply resumes)
ALSA_RSS_TIMEOUT_S = 240


def barge_in(stack_factory, work: Path, rig, question: Path, runs: int, configure=lambda config: None) -> dict:
    """Press while the reply plays; the speaker sink's monitor shows when the sound stopped.

    The dev server replies with a steady tone, so "the last loud sample" is the moment the speaker
    stopped, not a pause between words. An upper bound: the first monitor block read after the
    sound stopped dates it, so the figure includes the control-socket round trip of the press and
    up to one monitor fragment (parec asks for MONITOR_LATENCY_MS) plus the reader's scheduling."""
    from support.stack import running
    latencies_ms: list[float] = []
    read_periods: list[float] = []
    (work / "timeline.jsonl").unlink(missing_ok=True)   # the daemon appends: a previous bench's would match
    with stack_factory(work, "--mode", "tone") as stack:
        config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": 2})
        configure(config)
        with running(stack.daemon(config, env=rig.env())) as daemon:
            for _ in range(runs):
                latency_ms, periods = _one_barge_in(daemon, rig, question)
                latencies_ms.append(latency_ms)
                read_periods += periods
                time.sleep(0.3)
    median, worst = median_max(latencies_ms)
    return {"barge_in_ms": median, "barge_in_max_ms": worst, "barge_in_all_ms": [round(v, 1) for v in latencies_ms],
            "monitor_latency_setting_ms": MONITOR_LATENCY_MS,
            "monitor_read_period_median_ms": float(np.median(read_periods)) if read_periods else float("nan")}


def _one_barge_in(daemon, rig, question: Path) -> tuple[float, list[float]]:
    monitor = SpeakerMonitor(rig.env(), rig.SPEAKER_SINK, rig.speaker_rate_hz, rig.speaker_channels).start()
    try:
        mark = len(daemon.timeline())
        daemon.ctl("press")
        feeder = rig.feed(question)   # still feeding the question's silent tail when the reply starts
        daemon.wait_for("reply_audio", timeout_s=40, after=mark)
        time.sleep(PRESS_AFTER_REPLY_S)
        pressed_s = time.monotonic()
        daemon.ctl("press")
        daemon.wait_for("truncated", timeout_s=10, after=mark)
        time.sleep(SILENT_WINDOW_S + 0.3)
        feeder.wait(timeout=30)
    finally:
        monitor.stop()
    daemon.ctl("press")                                  # listening now: this press ends it
    daemon.wait_for("ended", timeout_s=15, after=mark)
    samples, times_s = monitor.samples(), monitor.times_s()
    before = samples[(times_s > pressed_s - 0.1) & (times_s < pressed_s)]
    if np.abs(before.astype(np.int32)).max(initial=0) < 1000:
        raise RuntimeError("barge-in: the speaker was not playing when we pressed (no loud audio in the "
                           "0.1 s before the press)")
    after_s = silent_after_s(samples, times_s, pressed_s, SILENT_WINDOW_S)
    if after_s is None:
        raise RuntimeError("barge-in: the speaker recording ended before the silence window")
    return after_s * 1000, list(monitor.read_periods_ms())


def parrot(stack_factory, work: Path, question: Path, mode: str, rig, configure=lambda config: None) -> dict:
    """The dev server replies with the user's own audio; how well does the speaker's output match
    the question? WAV devices: the reply file; PulseAudio: the speaker sink's monitor at 24 kHz."""
    from support.fixtures_audio import read_wav
    from support.stack import running
    (work / "timeline.jsonl").unlink(missing_ok=True)   # the daemon appends: a previous bench's would match
    with stack_factory(work, "--mode", "parrot") as stack:
        if mode == "wav":
            config = stack.config(mic=f"wav:{question}", speaker=f"wav:{work / 'parrot.wav'}",
                                  conversation={"idle_timeout_s": 2})
            configure(config)
            with running(stack.daemon(config)) as daemon:
                daemon.ctl("press")
                daemon.wait_for("ended", timeout_s=60)
            played, p_rate, _ = read_wav(work / "parrot.wav")
        else:
            config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": 2})
            configure(config)
            monitor = SpeakerMonitor(rig.env(), rig.SPEAKER_SINK, 24000, 1)
            with running(stack.daemon(config, env=rig.env())) as daemon:
                monitor.start()
                try:
                    daemon.ctl("press")
                    rig.feed(question).wait(timeout=30)
                    daemon.wait_for("reply_played", timeout_s=60)
                    time.sleep(0.3)
                finally:
                    monitor.stop()
                daemon.ctl("press")
                daemon.wait_for("ended", timeout_s=15)
            played, p_rate = monitor.samples(), 24000
    q, q_rate, _ = read_wav(question)
    return {"parrot_waveform_corr": waveform_correlation(q, q_rate, played, p_rate),
            "parrot_envelope_corr": envelope_correlation(q, q_rate, played, p_rate)}


def alsa_rss(out: Path) -> dict:
    """Peak RSS with real PortAudio devices on plain ALSA (no sound server, no ALSA plugins), with TLS to
    the backend and the session as on a Pi, at a start with the unit's bytecode cache filled; the first
    start (which fills it) is reported too."""
    shutil.rmtree(out, ignore_errors=True)   # the script reads its daemon's whole timeline: start clean
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lib" / "check_arm64_alsa_rss.py"),
                             "--tls", "--out", str(out)], capture_output=True, text=True, timeout=ALSA_RSS_TIMEOUT_S)
    try:
        doc = json.loads(result.stdout)
    except ValueError:
        raise RuntimeError(f"check_arm64_alsa_rss.py printed no result (exit {result.returncode}): "
                           f"{result.stderr[-1500:]}") from None
    return {"alsa_peak_rss_mib": doc["peak_rss_mib"], "alsa_reply_played": result.returncode == 0,
            "alsa_first_start_peak_rss_mib": doc.get("first_start_peak_rss_mib"),
            "alsa_plugin_libraries": doc["plugin_libraries"]}
