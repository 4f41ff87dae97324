"""`scripts/bench`: the daemon's cost and latency on scripted conversations.

Each run presses the button (control socket), streams a spoken question, plays the dev server's
spoken reply and waits for the conversation to end. Measured from outside the daemon process:
CPU seconds (/proc/PID/stat, 10 ms ticks), peak RSS (VmHWM), wakeups (per-thread context switches
from /proc/PID/task/*/status) while idle and in conversation; barge-in press -> speaker silent
from the speaker sink's monitor (PulseAudio devices); the parrot round trip's correlation; peak
RSS on plain ALSA. From the daemon's own metrics: press -> first append on the wire, first reply
delta -> speaker, bytes sent vs. raw capture. `--compare` runs pivoice against a reference client
written from the openai SDK's docs instead (bench_compare.py); `--plot FILE.png` draws one
conversation's timeline instead (bench_plot.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))   # the process launchers are shared with the e2e tests

from support.fixtures_audio import make_speech_wav  # noqa: E402
from support.pulse import PulseRig                  # noqa: E402
from support.stack import offline_stack, running    # noqa: E402

from bench_compare import report_compare, run_compare                                  # noqa: E402
from bench_probes import CLOCK_TICK_S, SwitchSampler, cpu_seconds, peak_rss_mib   # noqa: E402
from bench_scenarios import alsa_rss, barge_in, parrot                                # noqa: E402

QUESTION = "Could you set a timer for the pasta, and remind me to check the oven in ten minutes?"
# issue #8's targets
TARGETS = {"cpu_pct_per_audio_s": 1.0, "idle_cpu_pct": 0.05, "alsa_peak_rss_mib": 50, "press_to_first_append_ms": 50,
           "barge_in_ms": 50, "delta_to_speaker_ms": 40, "idle_wakeups_per_s": 0, "parrot_waveform_corr_wav": 0.99,
           "compare_cpu_ratio_vs_best_reference": 0.5}
AT_LEAST = {"parrot_waveform_corr_wav"}


def apply_tuning(config: dict, tuning: dict) -> None:
    for key, value in tuning.items():   # e.g. ("input", "frame_ms"): 30
        if value is not None:
            if key[0] == "audio":
                config["audio"][key[1]] = value
            else:
                config["audio"].setdefault(key[0], {})[key[1]] = value


def run_mode(mode: str, work: Path, question: Path, runs: int, rig: PulseRig | None, tuning: dict,
             idle_s: float) -> dict:
    (work / "timeline.jsonl").unlink(missing_ok=True)   # the daemon appends: a previous bench's would match
    with offline_stack(work) as stack:
        if mode == "wav":
            config = stack.config(mic=f"wav:{question}", speaker=f"wav:{work / 'reply.wav'}",
                                  conversation={"idle_timeout_s": 2})
            env = None
        else:
            config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": 2})
            env = rig.env()
        apply_tuning(config, tuning)
        with running(stack.daemon(config, env=env)) as daemon:
            pid = daemon.process.pid
            time.sleep(1.0)   # start-up work (imports settling, the first key) is not idle time
            idle_cpu0, idle_t0 = cpu_seconds(pid), time.monotonic()
            idle_sampler = SwitchSampler(pid, period_s=1.0).start()
            time.sleep(idle_s)
            idle_cpu1, idle_woke = cpu_seconds(pid), idle_sampler.stop()
            idle_window_s = time.monotonic() - idle_t0
            cpu_s = audio_s = 0.0
            per_run: list[tuple[float, float]] = []   # (CPU s, audio s): the first run pays lazy imports
            conv_woke: dict[int, list] = {}   # tid -> [name, switches] over all runs
            for _ in range(runs):
                before_cpu, sampler = cpu_seconds(pid), SwitchSampler(pid).start()
                before = daemon.status()["metrics"]["raw_capture_bytes"]
                mark = len(daemon.timeline())
                daemon.ctl("press")
                feeder = rig.feed(question) if rig else None
                daemon.wait_for("ended", timeout_s=60, after=mark)
                if feeder:
                    feeder.wait(timeout=30)
                run_cpu_s = cpu_seconds(pid) - before_cpu
                cpu_s += run_cpu_s
                for t in sampler.stop():
                    conv_woke.setdefault(t.tid, [t.name, 0])[1] += t.switches
                after = daemon.status()["metrics"]["raw_capture_bytes"]
                run_audio_s = (after - before) / 2 / 16000   # the mic captures at 16 kHz mono in both modes
                audio_s += run_audio_s
                per_run.append((run_cpu_s, run_audio_s))
                time.sleep(0.3)
            metrics = daemon.status()["metrics"]
            rss = peak_rss_mib(pid)
    configure = functools.partial(apply_tuning, tuning=tuning)
    extra = barge_in(offline_stack, work / "barge-in", rig, question, runs, configure) if mode == "pulse" else {}
    extra.update({f"{k}_{mode}": v
                  for k, v in parrot(offline_stack, work / "parrot", question, mode, rig, configure).items()})
    sent, raw = metrics["wire_audio_bytes"], metrics["raw_capture_bytes"]
    return {
        "mode": mode, "runs": runs, "audio_s": audio_s, "cpu_s": cpu_s,
        "idle_s": idle_window_s, "idle_cpu_pct": 100 * (idle_cpu1 - idle_cpu0) / idle_window_s,
        "idle_cpu_resolution_pct": 100 * CLOCK_TICK_S / idle_window_s,
        "idle_wakeups_per_s": sum(t.switches for t in idle_woke) / idle_window_s,
        "idle_woken_threads": [{"tid": t.tid, "name": t.name, "switches": t.switches} for t in idle_woke],
        "conversation_wakeups_per_audio_s": sum(n for _, n in conv_woke.values()) / audio_s,
        "conversation_woken_threads": by_name(conv_woke, audio_s),
        "cpu_pct_per_audio_s": 100 * cpu_s / audio_s,
        "cpu_pct_per_audio_s_by_run": [round(100 * c / a, 2) for c, a in per_run],
        "peak_rss_mib": rss,
        "press_to_first_append_ms": metrics["press_to_first_append_ms"]["median_ms"],
        "press_to_first_append_max_ms": metrics["press_to_first_append_ms"]["max_ms"],
        "delta_to_speaker_ms": metrics["delta_to_speaker_ms"]["median_ms"],
        "delta_to_device_ms": (metrics["delta_to_device_ms"]["median_ms"]
                               if metrics["delta_to_device_ms"]["count"] else float("nan")),
        "sent_vs_raw_pct": 100 * sent / raw,
        "sent_vs_ungated_pcm_pct": 100 * sent / (raw / 2 / 16000 * 48000),
        **extra,
    }


def by_name(woke: dict[int, list], audio_s: float) -> list[dict]:
    """Wakeups per audio second summed per thread name (each conversation has new thread ids)."""
    names: dict[str, list] = {}
    for name, switches in woke.values():
        entry = names.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += switches
    return sorted(({"name": name, "threads": n, "per_audio_s": round(total / audio_s, 1)}
                   for name, (n, total) in names.items()), key=lambda t: -t["per_audio_s"])


def no_nan(value):
    """JSON has no NaN: a figure that could not be measured is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_nan(v) for v in value]
    return value


def mark(r: dict, key: str, target_key: str | None = None) -> str:
    target_key = target_key or key
    value, target = r.get(key), TARGETS[target_key]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    ok = value >= target if target_key in AT_LEAST else value <= target
    return "ok" if ok else "OVER TARGET" if target_key not in AT_LEAST else "UNDER TARGET"


def report(r: dict) -> None:
    m = r["mode"]
    print(f"\n== {m} devices: {r['runs']} conversations, {r['audio_s']:.1f} s of captured audio")
    print(f"  CPU                        {r['cpu_s']:.2f} s = {r['cpu_pct_per_audio_s']:.2f} % of one core "
          f"per second of audio (target <= {TARGETS['cpu_pct_per_audio_s']} %: {mark(r, 'cpu_pct_per_audio_s')})")
    print(f"  CPU by conversation        {', '.join(f'{p:.2f}' for p in r['cpu_pct_per_audio_s_by_run'])} % "
          f"(the first after start also pays the lazy imports of the session code)")
    print(f"  CPU while idle             {r['idle_cpu_pct']:.3f} % of one core over {r['idle_s']:.0f} s waiting for a "
          f"press (resolution {r['idle_cpu_resolution_pct']:.3f} %: one 10 ms tick; target <= "
          f"{TARGETS['idle_cpu_pct']} %: {mark(r, 'idle_cpu_pct')})")
    threads = ", ".join(f"tid {t['tid']} {t['name']} x{t['switches']}" for t in r["idle_woken_threads"]) or "none"
    print(f"  wakeups while idle         {r['idle_wakeups_per_s']:.2f}/s (target 0: {mark(r, 'idle_wakeups_per_s')}); "
          f"threads that woke: {threads}")
    busiest = ", ".join(f"{t['name']} {t['per_audio_s']:.0f} ({t['threads']} tids)" for t in r["conversation_woken_threads"])
    print(f"  wakeups in conversation    {r['conversation_wakeups_per_audio_s']:.0f} per audio second, all threads; by "
          f"thread name: {busiest}")
    print(f"  peak RSS                   {r['peak_rss_mib']:.1f} MiB (with this device stack; plain ALSA below)")
    print(f"  press -> first append      median {r['press_to_first_append_ms']:.1f} ms, max "
          f"{r['press_to_first_append_max_ms']:.1f} ms (target <= 50: {mark(r, 'press_to_first_append_ms')})")
    print(f"  reply delta -> speaker     median {r['delta_to_speaker_ms']:.1f} ms written to the speaker "
          f"(target <= 40: {mark(r, 'delta_to_speaker_ms')}); {r['delta_to_device_ms']:.1f} ms until its "
          f"audio thread handed it to the device")
    if "barge_in_ms" in r:
        print(f"  barge-in press -> silent   median {r['barge_in_ms']:.1f} ms, max {r['barge_in_max_ms']:.1f} ms "
              f"(target <= 50: {mark(r, 'barge_in_ms')}); an upper bound: includes the control-socket press and "
              f"the speaker monitor path (parec --latency-msec={r['monitor_latency_setting_ms']}, blocks read every "
              f"{r['monitor_read_period_median_ms']:.1f} ms)")
    wave_key = f"parrot_waveform_corr_{m}"
    target = f" (target >= 0.99: {mark(r, wave_key, 'parrot_waveform_corr_wav')})" if m == "wav" else ""
    print(f"  parrot round trip          waveform correlation {r[wave_key]:.4f}{target}; 10 ms envelope "
          f"correlation {r[f'parrot_envelope_corr_{m}']:.3f} (waveform: the question resampled to the played rate, "
          "aligned at the cross-correlation peak)")
    print(f"  bytes sent                 {r['sent_vs_raw_pct']:.0f} % of the raw 16 kHz capture, "
          f"{r['sent_vs_ungated_pcm_pct']:.0f} % of streaming everything as 24 kHz PCM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=None, help="conversations per device kind (default 5), "
                        "or rounds with --compare (default 3)")
    parser.add_argument("--devices", choices=("wav", "pulse", "both"), default="both")
    parser.add_argument("--compare", action="store_true", help="pivoice vs. the reference client, interleaved")
    parser.add_argument("--window-s", type=float, default=13.0, help="--compare: each client's measured window")
    parser.add_argument("--idle-s", type=float, default=30.0, help="idle CPU/wakeups window")
    parser.add_argument("--skip-alsa-rss", action="store_true", help="skip the plain-ALSA peak RSS run")
    parser.add_argument("--json", dest="json_path", help="also write every figure to this JSON file")
    parser.add_argument("--plot", metavar="FILE.png", help="instead: one conversation on the PulseAudio rig, "
                        "drawn as a timeline (press, gate, appends, server VAD, deltas, speaker level) to FILE.png")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"))
    parser.add_argument("--frame-ms", type=int, default=None, help="override audio.input.frame_ms")
    parser.add_argument("--block-ms", type=int, default=None, help="override audio.input.block_ms")
    parser.add_argument("--chunk-ms", type=int, default=None, help="override audio.chunk_ms")
    parser.add_argument("--buffer-ms", type=int, default=None, help="override audio.output.buffer_ms")
    args = parser.parse_args()
    runs = args.runs or (3 if args.compare else 5)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # speech from the first frame: the user talks as they press
    question = make_speech_wav(out / "question.wav", QUESTION, rate_hz=16000, lead_silence_s=0.05,
                               tail_silence_s=2.0)
    tuning = {("input", "frame_ms"): args.frame_ms, ("input", "block_ms"): args.block_ms,
              ("audio", "chunk_ms"): args.chunk_ms, ("output", "buffer_ms"): args.buffer_ms}
    if args.plot:
        from bench_plot import run_plot
        run_plot(out / "plot", Path(args.plot).resolve(), question, functools.partial(apply_tuning, tuning=tuning))
        return 0
    figures: dict = {"cpus": os.cpu_count(), "targets": TARGETS, "clock_tick_s": CLOCK_TICK_S}
    if args.compare:
        print(f"pivoice bench --compare: {runs} interleaved rounds, loopback, {os.cpu_count()} CPUs", flush=True)
        figures["compare"] = run_compare(out / "compare", question, runs, args.window_s,
                                         functools.partial(apply_tuning, tuning=tuning))
        report_compare(figures["compare"])
    else:
        modes = ["wav", "pulse"] if args.devices == "both" else [args.devices]
        print(f"pivoice bench: {runs} scripted conversations per device kind, loopback, "
              f"{os.cpu_count()} CPUs", flush=True)
        for mode in modes:
            rig = PulseRig().start() if mode == "pulse" else None
            try:
                figures[mode] = run_mode(mode, out / mode, question, runs, rig, tuning, args.idle_s)
            finally:
                if rig:
                    rig.stop()
            report(figures[mode])
        if not args.skip_alsa_rss:
            figures["alsa"] = alsa_rss(out / "alsa-rss")
            a = figures["alsa"]
            print(f"\n== plain ALSA (no sound server, no ALSA plugins; https + wss): peak RSS "
                  f"{a['alsa_peak_rss_mib']:.1f} MiB (target <= {TARGETS['alsa_peak_rss_mib']}: "
                  f"{mark(a, 'alsa_peak_rss_mib')}; the first start, compiling the bytecode cache: "
                  f"{a['alsa_first_start_peak_rss_mib']} MiB); reply played: "
                  f"{a['alsa_reply_played']}; plugin libraries loaded: {a['alsa_plugin_libraries'] or 'none'}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(no_nan(figures), indent=2) + "\n")
        print(f"\nfigures written to {args.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
