"""`scripts/bench --plot FILE.png`: the timeline of one conversation on the PulseAudio rig.

`collect()` runs one conversation (the bench's: press through the control socket, the question
played into the virtual mic) and gathers what is observable from outside the daemon, all on
time.monotonic() (one clock for the daemon's `--timeline` and this process):
- the daemon's `--timeline` notes: the press, the local gate opening and closing, the end;
- a loopback tap between the daemon and the dev server (bench_wiretap.py): each
  `input_audio_buffer.append` as it left the daemon, the server's VAD events, response.created /
  response.done and each reply audio delta as it reached the daemon;
- the speaker sink's monitor (parec, as the barge-in figure uses): the output level over time.
`draw()` turns a Timeline into a PNG (matplotlib, Agg: no display needed). Main thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench_audio import SILENCE_THRESHOLD, SpeakerMonitor
from bench_plot_draw import FLOOR_DBFS, LANES, Drawn, draw  # noqa: F401  (draw: the other half of --plot)
from bench_wiretap import CLIENT, SERVER, WireTap

LEVEL_WINDOW_MS = 10
CONVERSATION_TIMEOUT_S = 60


@dataclass
class Timeline:
    """One conversation; every time in ms from the press."""
    press_ms: float = 0.0
    gate_ms: list[tuple[float, float]] = field(default_factory=list)   # local gate open intervals
    connected_ms: float | None = None
    appends_ms: list[float] = field(default_factory=list)              # sent (wire tap)
    speech_started_ms: list[float] = field(default_factory=list)       # server VAD
    speech_stopped_ms: list[float] = field(default_factory=list)
    response_created_ms: list[float] = field(default_factory=list)
    response_done_ms: list[float] = field(default_factory=list)
    deltas_ms: list[float] = field(default_factory=list)               # received (wire tap)
    level_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))  # speaker level: window times
    level_dbfs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    first_sound_ms: float | None = None     # first audible sample on the speaker after the first delta
    end_ms: float | None = None
    end_reason: str = ""
    earcons_ms: list[tuple[float, str]] = field(default_factory=list)   # (time, cue): the daemon's earcon notes
    daemon_figures: dict = field(default_factory=dict)   # the daemon's own latency metrics
    notes: list[dict] = field(default_factory=list)      # the daemon's timeline entries, raw

    def latencies(self) -> dict:
        """The key figures: the daemon's own (its clocks) and the wire's (this tap's)."""
        first = lambda xs: xs[0] if xs else None   # noqa: E731
        delta0, append0 = first(self.deltas_ms), first(self.appends_ms)
        return {
            "press_to_first_append_ms": self.daemon_figures.get("press_to_first_append_ms"),
            "press_to_first_append_wire_ms": append0,
            "delta_to_speaker_ms": self.daemon_figures.get("delta_to_speaker_ms"),
            "first_delta_to_audible_ms": (self.first_sound_ms - delta0
                                          if self.first_sound_ms is not None and delta0 is not None else None),
        }


def collect(stack, rig, question: Path, configure=lambda config: None) -> Timeline:
    """One conversation through `stack` (support.stack.offline_stack) with `rig`'s devices; it ends
    by the idle timeout after the reply."""
    from support.stack import running
    tap = WireTap(("127.0.0.1", stack.dev.port)).start()
    try:
        config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": 2})
        config["realtime"]["url"] = tap.url()
        configure(config)
        with running(stack.daemon(config, env=rig.env())) as daemon:
            time.sleep(0.3)   # start-up settles: the press starts from an idle daemon
            monitor = SpeakerMonitor(rig.env(), rig.SPEAKER_SINK, rig.speaker_rate_hz, rig.speaker_channels)
            monitor.start()
            try:
                mark = len(daemon.timeline())
                daemon.ctl("press")
                feeder = rig.feed(question)
                daemon.wait_for("ended", timeout_s=CONVERSATION_TIMEOUT_S, after=mark)
                feeder.wait(timeout=30)
                time.sleep(0.2)
            finally:
                monitor.stop()
            notes = daemon.timeline()[mark:]
            status = daemon.status()
    finally:
        tap.stop()
    return build_timeline(notes, tap.events(), monitor.samples(), monitor.times_s(), monitor.rate_hz, status)


def build_timeline(notes: list[dict], wire: list, samples: np.ndarray, sample_times_s: np.ndarray,
                   rate_hz: int, status: dict) -> Timeline:
    """Pure: the daemon's notes, the tap's events and the speaker recording on one axis."""
    press = next((n for n in notes if n["kind"] == "pressed"), None)
    if press is None:
        raise RuntimeError("the daemon's timeline has no press: " + ", ".join(n["kind"] for n in notes))
    t0 = press["t"]
    ms = lambda t: round((t - t0) * 1000, 2)   # noqa: E731
    tl = Timeline(notes=notes)
    end = next((n for n in notes if n["kind"] == "ended"), None)
    if end is not None:
        tl.end_ms, tl.end_reason = ms(end["t"]), end["text"]
    opened = None
    for n in notes:
        if n["kind"] == "local_speech_start" and opened is None:
            opened = ms(n["t"])
        elif n["kind"] == "local_speech_stop" and opened is not None:
            tl.gate_ms.append((opened, ms(n["t"])))
            opened = None
        elif n["kind"] == "connected" and tl.connected_ms is None:
            tl.connected_ms = ms(n["t"])
    if opened is not None:   # still open at the end
        tl.gate_ms.append((opened, tl.end_ms if tl.end_ms is not None else opened))
    lanes = {(CLIENT, "input_audio_buffer.append"): tl.appends_ms,
             (SERVER, "input_audio_buffer.speech_started"): tl.speech_started_ms,
             (SERVER, "input_audio_buffer.speech_stopped"): tl.speech_stopped_ms,
             (SERVER, "response.created"): tl.response_created_ms,
             (SERVER, "response.done"): tl.response_done_ms,
             (SERVER, "response.output_audio.delta"): tl.deltas_ms}
    for ev in wire:
        if ev.t_s >= t0 and (ev.sender, ev.type) in lanes:
            lanes[(ev.sender, ev.type)].append(ms(ev.t_s))
    tl.level_ms, tl.level_dbfs = level_track(samples, sample_times_s, rate_hz)
    tl.level_ms = (tl.level_ms - t0) * 1000
    tl.earcons_ms = [(ms(n["t"]), n["text"].split(":", 1)[-1].strip()) for n in notes if n["kind"] == "earcon"]
    if tl.deltas_ms:
        heard_s = first_sound_s(samples, sample_times_s, t0 + tl.deltas_ms[0] / 1000)
        tl.first_sound_ms = ms(heard_s) if heard_s is not None else None
    # this conversation's own figures where the daemon reports them, else its medians (one conversation)
    last, metrics = status.get("last_conversation") or {}, status.get("metrics") or {}
    for key in ("press_to_first_append_ms", "delta_to_speaker_ms"):
        value = last.get(key)
        tl.daemon_figures[key] = value if value is not None else (metrics.get(key) or {}).get("median_ms")
    return tl


def first_sound_s(samples: np.ndarray, times_s: np.ndarray, from_s: float,
                  quiet_before_s: float = 0.05) -> float | None:
    """When the first audible sample at or after `from_s` was read; None if the speaker was not
    quiet just before (an earcon still playing would be mistaken for the reply)."""
    loud = np.abs(samples.astype(np.int32)) > SILENCE_THRESHOLD
    if loud[(times_s >= from_s - quiet_before_s) & (times_s < from_s)].any():
        return None
    after = np.nonzero(loud & (times_s >= from_s))[0]
    return float(times_s[after[0]]) if len(after) else None


def level_track(samples: np.ndarray, times_s: np.ndarray, rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """RMS level in dBFS per LEVEL_WINDOW_MS window, dated by the window's last sample's read time
    (an upper bound of when it played: see bench_audio.read_times_s)."""
    n = rate_hz * LEVEL_WINDOW_MS // 1000
    count = len(samples) // n
    if count == 0:
        return np.zeros(0), np.zeros(0)
    x = samples[:count * n].astype(np.float64).reshape(count, n)
    rms = np.sqrt((x ** 2).mean(axis=1))
    dbfs = 20 * np.log10(np.maximum(rms, 1e-9) / 32768)
    return times_s[n - 1:count * n:n], np.maximum(dbfs, FLOOR_DBFS)


def run_plot(out: Path, png: Path, question: Path, configure=lambda config: None) -> Timeline:
    """`scripts/bench --plot`: the rig, the stack, one conversation, the PNG."""
    from support.pulse import PulseRig
    from support.stack import offline_stack
    rig = PulseRig().start()
    try:
        (out / "timeline.jsonl").unlink(missing_ok=True)   # the daemon appends: start clean
        with offline_stack(out) as stack:
            tl = collect(stack, rig, question, configure)
    finally:
        rig.stop()
    png.parent.mkdir(parents=True, exist_ok=True)
    drawn = draw(tl, png)
    lat = tl.latencies()
    print(f"timeline of one conversation written to {drawn.path} ({drawn.size_px[0]}x{drawn.size_px[1]} px)")
    for key, value in lat.items():
        print(f"  {key:32s} {'n/a' if value is None else f'{value:.1f} ms'}")
    print(f"  appends sent {len(tl.appends_ms)}, reply deltas {len(tl.deltas_ms)}, "
          f"server VAD {len(tl.speech_started_ms)} start / {len(tl.speech_stopped_ms)} stop; end at "
          f"{tl.end_ms} ms: {tl.end_reason}")
    return tl
