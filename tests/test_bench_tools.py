"""scripts/bench's measuring tools: /proc parsing, ratio maths, silence detection and correlation on
generated data; and the reference client (scripts/lib/reference_client.py) against the offline stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "lib"))

from bench_audio import (read_times_s, envelope_correlation, last_loud_index, silent_after_s,  # noqa: E402
                         waveform_correlation)
from bench_compare import summarize                                                          # noqa: E402
from bench_probes import (CLOCK_TICK_S, SwitchSampler, ThreadSwitches, parse_stat_cpu_ticks, parse_status_kib,  # noqa: E402
                          parse_thread_status, pct_of_core, ratio, switches_between, thread_switches)

RATE_HZ = 24000


def speechlike(seconds: float, rate_hz: int, seed: int = 1) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope with gaps: wideband like speech, never periodic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    env = np.clip(np.sin(2 * np.pi * 3.3 * t) + 0.3 * np.sin(2 * np.pi * 0.7 * t), 0, None)
    return (6000 * env * rng.standard_normal(len(t))).astype(np.int16)


# ---- /proc parsing ----------------------------------------------------------------------------

def test_stat_cpu_ticks_counts_fields_after_the_last_parenthesis():
    # comm may contain spaces and ')': utime (field 14) and stime (15) must still be found
    rest = " ".join(["S"] + [str(i) for i in range(4, 14)] + ["250", "75"] + ["0"] * 30)
    assert parse_stat_cpu_ticks(f"4242 (we ird) (name) {rest}") == 325


def test_status_fields_in_kib():
    text = "Name:\tpython\nVmHWM:\t  70312 kB\nVmRSS:\t  65000 kB\n"
    assert parse_status_kib(text, "VmHWM") == 70312
    assert parse_status_kib(text, "VmSwap") is None


def test_thread_status_sums_voluntary_and_nonvoluntary_switches():
    text = "Name:\tpa-audio\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n"
    assert parse_thread_status(77, text) == ThreadSwitches(77, "pa-audio", 127)


def test_switches_between_counts_new_threads_from_zero_and_drops_quiet_ones():
    before = {1: ThreadSwitches(1, "main", 10), 2: ThreadSwitches(2, "quiet", 5), 3: ThreadSwitches(3, "gone", 9)}
    after = {1: ThreadSwitches(1, "main", 14), 2: ThreadSwitches(2, "quiet", 5), 4: ThreadSwitches(4, "new", 30)}
    assert switches_between(before, after) == [ThreadSwitches(4, "new", 30), ThreadSwitches(1, "main", 4)]


def test_thread_switches_sees_a_thread_of_this_process_wake_up():
    tid_box, go, looped, release = [], threading.Event(), threading.Event(), threading.Event()

    def sleeper() -> None:
        tid_box.append(threading.get_native_id())
        go.wait(5)
        for _ in range(25):
            release.wait(0.002)   # times out: one wakeup each
        looped.set()
        release.wait(5)

    thread = threading.Thread(target=sleeper)
    thread.start()
    while not tid_box:
        time.sleep(0.001)
    before = thread_switches(os.getpid())
    go.set()
    assert looped.wait(5)
    after = thread_switches(os.getpid())
    release.set()
    thread.join(5)
    woke = {t.tid: t.switches for t in switches_between(before, after)}
    assert woke.get(tid_box[0], 0) >= 25, woke


def test_switch_sampler_keeps_the_wakeups_of_a_thread_that_has_exited():
    tid_box = []

    def short_lived() -> None:
        tid_box.append(threading.get_native_id())
        pause = threading.Event()
        for _ in range(40):
            pause.wait(0.005)

    sampler = SwitchSampler(os.getpid(), period_s=0.02).start()
    thread = threading.Thread(target=short_lived)
    thread.start()
    thread.join(5)
    time.sleep(0.05)
    assert tid_box[0] not in thread_switches(os.getpid())   # /proc no longer shows it ...
    woke = {t.tid: t.switches for t in sampler.stop()}
    assert woke.get(tid_box[0], 0) >= 20, woke             # ... the sampler still counts it


# ---- figures ----------------------------------------------------------------------------------

def test_percent_of_one_core_and_ratios():
    assert pct_of_core(0.15, 30.0) == pytest.approx(0.5)
    assert CLOCK_TICK_S == pytest.approx(0.01)   # what the reports say about the resolution
    with pytest.raises(ValueError, match="window"):
        pct_of_core(1.0, 0.0)
    assert ratio(1.0, 4.0) == 0.25
    assert np.isnan(ratio(1.0, 0.0))


def test_compare_summary_takes_ratios_of_medians_and_picks_the_cheapest_reference():
    rounds = []
    for r, (p, r20, r100) in enumerate([(1.0, 4.0, 2.0), (1.2, 6.0, 2.4), (0.9, 5.0, 3.0)]):
        for client, cpu in (("pivoice", p), ("reference-20ms", r20), ("reference-100ms", r100)):
            rounds.append({"round": r + 1, "client": client, "cpu_pct": cpu, "wakeups_per_s": 10.0,
                           "peak_rss_mib": 50.0 if client == "pivoice" else 80.0, "sound_server_cpu_pct": 1.0,
                           "late": False, "cpu_s": 0.0, "reply_end_s": 9.0})
    summary = summarize(rounds, runs=3, window_s=13.0)
    assert summary["best_reference"] == "reference-100ms"
    assert summary["ratios"]["reference-20ms"]["cpu_ratio"] == pytest.approx(1.0 / 5.0)
    assert summary["ratios"]["reference-100ms"]["cpu_ratio"] == pytest.approx(1.0 / 2.4)
    assert summary["ratios"]["reference-100ms"]["cpu_ratio_per_round"] == [0.5, 0.5, 0.3]
    assert summary["ratios"]["reference-100ms"]["rss_ratio"] == pytest.approx(50 / 80)


# ---- silence detection ------------------------------------------------------------------------

def test_each_sample_is_dated_by_the_read_of_its_block():
    times = read_times_s([(100.010, 240), (100.050, 240), (100.030, 120)])
    assert len(times) == 600
    assert times[0] == times[239] == 100.010 and times[240] == 100.050 and times[-1] == 100.030


def test_last_loud_sample_and_time_until_silent():
    samples = np.zeros(RATE_HZ * 2, dtype=np.int16)
    samples[: RATE_HZ // 2] = np.where(np.arange(RATE_HZ // 2) % 2, 5000, -5000)   # loud for 0.5 s ...
    samples[RATE_HZ // 2 + 10] = 40                               # ... then below the threshold
    times = 50.0 + np.arange(len(samples)) / RATE_HZ
    assert last_loud_index(samples) == RATE_HZ // 2 - 1
    assert silent_after_s(samples, times, 50.48, window_s=1.0) == pytest.approx(0.02, abs=1e-4)
    assert silent_after_s(samples, times, 50.6, window_s=1.0) == 0.0
    assert silent_after_s(samples, times, 51.5, window_s=1.0) is None   # the recording ends too soon
    assert silent_after_s(np.full(len(samples), 3000, np.int16), times, 50.2, window_s=1.0) is None   # never stops
    assert last_loud_index(np.zeros(10, dtype=np.int16)) == -1


# ---- correlation ------------------------------------------------------------------------------

def test_waveform_correlation_finds_the_question_resampled_and_delayed():
    question = np.concatenate([np.zeros(1600, np.int16), speechlike(2.0, 16000), np.zeros(3200, np.int16)])
    played = soxr.resample(question.astype(np.float64), 16000, RATE_HZ).astype(np.int16)
    played = np.concatenate([np.zeros(7777, np.int16), played, np.zeros(5000, np.int16)])
    assert waveform_correlation(question, 16000, played, RATE_HZ) > 0.99
    assert envelope_correlation(question, 16000, played, RATE_HZ) > 0.99


def test_unrelated_audio_does_not_correlate():
    question = speechlike(2.0, 16000, seed=1)
    other = speechlike(3.0, RATE_HZ, seed=2)
    assert waveform_correlation(question, 16000, other, RATE_HZ) < 0.2
    with pytest.raises(ValueError, match="silent"):
        waveform_correlation(np.zeros(1000, np.int16), 16000, other, RATE_HZ)


# ---- the reference client against the offline stack --------------------------------------------

@pytest.mark.integration
@pytest.mark.pulse
def test_reference_client_streams_the_mic_and_plays_the_reply(tmp_path, pulse_rig):
    from bench_audio import SpeakerMonitor

    from support.fixtures_audio import make_speech_wav
    from support.stack import DEVICE_ID, offline_stack

    question = make_speech_wav(tmp_path / "q.wav", "Is the oven hot yet?", rate_hz=16000,
                               lead_silence_s=0.05, tail_silence_s=1.0)
    with offline_stack(tmp_path, "--mode", "tone") as stack:
        monitor = SpeakerMonitor(pulse_rig.env(), pulse_rig.SPEAKER_SINK, 24000, 1).start()
        try:
            client = subprocess.Popen(
                [sys.executable, str(ROOT / "scripts" / "lib" / "reference_client.py"), "--backend-url",
                 stack.tokens.url, "--device-id", DEVICE_ID, "--secret-file", str(tmp_path / "device-secret"),
                 "--base-url", stack.dev.url + "/v1", "--chunk-ms", "100", "--duration-s", "25",
                 "--after-reply-s", "1.5"],
                env=pulse_rig.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert json.loads(client.stdout.readline())["event"] == "ready"
            pulse_rig.feed(question).wait(timeout=20)
            out, err = client.communicate(timeout=30)
        finally:
            monitor.stop()
        records = stack.client_events()
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert client.returncode == 0, err[-2000:]
    assert events == ["reply_audio", "reply_done", "exit"], (events, err[-2000:])
    assert all(r["valid"] and not r["unknown_fields"] for r in records), records[:3]
    update = next(r["event"] for r in records if r["event"]["type"] == "session.update")
    assert update["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    appends = [r["event"]["audio"] for r in records if r["event"]["type"] == "input_audio_buffer.append"]
    # 100 ms at 24 kHz s16 = 4800 bytes = 6400 base64 characters, streamed continuously
    assert len(appends) >= 20 and {len(a) for a in appends} == {6400}
    assert np.abs(monitor.samples().astype(np.int32)).max() > 3000, "the reply's tone never reached the speaker"
