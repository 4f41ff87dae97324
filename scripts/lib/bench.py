"""`scripts/bench`: the daemon's cost and latency on scripted conversations.

Each run presses the button (control socket), streams a spoken question, plays the dev server's
spoken reply and waits for the conversation to end. Measured from outside the daemon process:
CPU seconds (/proc/PID/stat) and peak RSS (VmHWM); from the daemon's own metrics: press -> first
append on the wire, first reply delta -> speaker, bytes sent vs. raw capture.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))   # the process launchers are shared with the e2e tests

from support.fixtures_audio import make_speech_wav  # noqa: E402
from support.pulse import PulseRig                  # noqa: E402
from support.stack import offline_stack, running    # noqa: E402

QUESTION = "Could you set a timer for the pasta, and remind me to check the oven in ten minutes?"
IDLE_S = 10.0
TARGETS = {"cpu_pct_per_audio_s": 0.5, "peak_rss_mib": 60, "press_to_first_append_ms": 50,
           "delta_to_speaker_ms": 40}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_mode(mode: str, work: Path, question: Path, runs: int, rig: PulseRig | None, tuning: dict) -> dict:
    with offline_stack(work) as stack:
        if mode == "wav":
            config = stack.config(mic=f"wav:{question}", speaker=f"wav:{work / 'reply.wav'}",
                                  conversation={"idle_timeout_s": 2})
            env = None
        else:
            config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": 2})
            env = rig.env()
        for key, value in tuning.items():   # e.g. ("input", "frame_ms"): 30
            if value is not None:
                if key[0] == "audio":
                    config["audio"][key[1]] = value
                else:
                    config["audio"][key[0]][key[1]] = value
        with running(stack.daemon(config, env=env)) as daemon:
            pid = daemon.process.pid
            idle_before = cpu_seconds(pid)
            time.sleep(IDLE_S)
            idle_pct = 100 * (cpu_seconds(pid) - idle_before) / IDLE_S
            cpu_s = audio_s = 0.0
            for _ in range(runs):
                before_cpu, before = cpu_seconds(pid), daemon.status()["metrics"]["raw_capture_bytes"]
                mark = len(daemon.timeline())
                daemon.ctl("press")
                feeder = rig.feed(question) if rig else None
                daemon.wait_for("ended", timeout_s=60, after=mark)
                if feeder:
                    feeder.wait(timeout=30)
                cpu_s += cpu_seconds(pid) - before_cpu
                after = daemon.status()["metrics"]["raw_capture_bytes"]
                audio_s += (after - before) / 2 / 16000   # the mic captures at 16 kHz mono in both modes
                time.sleep(0.3)
            metrics = daemon.status()["metrics"]
            rss = peak_rss_mib(pid)
    sent, raw = metrics["wire_audio_bytes"], metrics["raw_capture_bytes"]
    return {
        "mode": mode, "runs": runs, "audio_s": audio_s, "cpu_s": cpu_s, "idle_cpu_pct": idle_pct,
        "cpu_pct_per_audio_s": 100 * cpu_s / audio_s,
        "peak_rss_mib": rss,
        "press_to_first_append_ms": metrics["press_to_first_append_ms"]["median_ms"],
        "press_to_first_append_max_ms": metrics["press_to_first_append_ms"]["max_ms"],
        "delta_to_speaker_ms": metrics["delta_to_speaker_ms"]["median_ms"],
        "delta_to_device_ms": (metrics["delta_to_device_ms"]["median_ms"]
                               if metrics["delta_to_device_ms"]["count"] else float("nan")),
        "sent_vs_raw_pct": 100 * sent / raw,
        "sent_vs_ungated_pcm_pct": 100 * sent / (raw / 2 / 16000 * 48000),
    }


def report(r: dict) -> None:
    def mark(key: str) -> str:
        return "ok" if r[key] <= TARGETS[key] else "OVER TARGET"
    print(f"\n== {r['mode']} devices: {r['runs']} conversations, {r['audio_s']:.1f} s of captured audio")
    print(f"  CPU                        {r['cpu_s']:.2f} s = {r['cpu_pct_per_audio_s']:.2f} % of one core "
          f"per second of audio (target <= 0.5 %: {mark('cpu_pct_per_audio_s')})")
    print(f"  CPU while idle             {r['idle_cpu_pct']:.2f} % of one core (waiting for a press, {IDLE_S:.0f} s)")
    print(f"  peak RSS                   {r['peak_rss_mib']:.1f} MiB (target <= 60: {mark('peak_rss_mib')})")
    print(f"  press -> first append      median {r['press_to_first_append_ms']:.1f} ms, max "
          f"{r['press_to_first_append_max_ms']:.1f} ms (target <= 50: {mark('press_to_first_append_ms')})")
    print(f"  reply delta -> speaker     median {r['delta_to_speaker_ms']:.1f} ms written to the speaker "
          f"(target <= 40: {mark('delta_to_speaker_ms')}); {r['delta_to_device_ms']:.1f} ms until its "
          f"audio thread handed it to the device")
    print(f"  bytes sent                 {r['sent_vs_raw_pct']:.0f} % of the raw 16 kHz capture, "
          f"{r['sent_vs_ungated_pcm_pct']:.0f} % of streaming everything as 24 kHz PCM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--devices", choices=("wav", "pulse", "both"), default="both")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"))
    parser.add_argument("--frame-ms", type=int, default=None, help="override audio.input.frame_ms")
    parser.add_argument("--chunk-ms", type=int, default=None, help="override audio.chunk_ms")
    parser.add_argument("--buffer-ms", type=int, default=None, help="override audio.output.buffer_ms")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # speech from the first frame: the user talks as they press
    question = make_speech_wav(out / "question.wav", QUESTION, rate_hz=16000, lead_silence_s=0.05,
                               tail_silence_s=2.0)
    modes = ["wav", "pulse"] if args.devices == "both" else [args.devices]
    print(f"pivoice bench: {args.runs} scripted conversations per device kind, loopback, "
          f"{os.cpu_count()} CPUs")
    for mode in modes:
        rig = PulseRig().start() if mode == "pulse" else None
        try:
            tuning = {("input", "frame_ms"): args.frame_ms, ("audio", "chunk_ms"): args.chunk_ms,
                      ("output", "buffer_ms"): args.buffer_ms}
            report(run_mode(mode, out / mode, question, args.runs, rig, tuning))
        finally:
            if rig:
                rig.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
