"""`scripts/bench --compare`: pivoice against the reference client (scripts/lib/reference_client.py)
at 20 ms and 100 ms chunks, on one PulseAudio rig and one offline stack, interleaved.

Each round runs the three clients one after the other (the order rotates each round, so a drift
in the machine's load does not favour one of them). A client's window starts when the question is
fed into the virtual mic (for pivoice: the press, at the same instant) and lasts `window_s` for all
three, which covers the question, the same fixed dev-server reply and a tail; a round whose reply
did not end at least TAIL_MIN_S before the window closes is flagged. Both stream the mic for the
whole window (pivoice's idle timeout outlasts it), so CPU per window second is also CPU per audio
second. The reference client connects
before its window (it is a long-running client); pivoice dials inside its window, on the press.
Main thread only, except a stdout reader thread per reference client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_probes import SwitchSampler, cpu_seconds, median_max, pct_of_core, peak_rss_mib, ratio

ROOT = Path(__file__).resolve().parents[2]
REPLY_TEXT = "Sure. I have set a timer for the pasta, and I will remind you to check the oven in ten minutes."
CLIENTS = ("pivoice", "reference-20ms", "reference-100ms")
TAIL_MIN_S = 1.0
READY_TIMEOUT_S = 20.0
REPLY_TIMEOUT_S = 40.0
PIVOICE_IDLE_S = 5.0


class ReferenceProcess:
    """One reference client process; its JSON milestone lines are collected by a reader thread."""

    def __init__(self, stack, env: dict, chunk_ms: int, duration_s: float, log_path: Path) -> None:
        from support.stack import DEVICE_ID
        cmd = [sys.executable, str(ROOT / "scripts" / "lib" / "reference_client.py"),
               "--backend-url", stack.tokens.url, "--device-id", DEVICE_ID,
               "--secret-file", str(stack.work / "device-secret"), "--base-url", stack.dev.url + "/v1",
               "--chunk-ms", str(chunk_ms), "--duration-s", str(duration_s)]
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                        start_new_session=True)   # stop() kills its whole group
        self.events: list[dict] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, name="reference-stdout", daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()

    def wait_for(self, event: str, timeout_s: float) -> dict:
        with self._changed:
            if self._changed.wait_for(lambda: any(e["event"] == event for e in self.events) or
                                      self.process.poll() is not None, timeout_s):
                for e in self.events:
                    if e["event"] == event:
                        return e
        raise RuntimeError(f"reference client: no {event!r} within {timeout_s} s (exit {self.process.poll()}, "
                           f"events {self.events}; its stderr: {self._log.name})")

    def stop(self) -> None:
        from support.tokenserver import stop_process
        stop_process(self.process, timeout_s=5)
        self._log.close()


def measure_window(pid: int, sound_server_pid: int, start_s: float, window_s: float, reply_end) -> dict:
    """CPU, wakeups and RSS of `pid` from now until start_s + window_s; `reply_end()` blocks until
    the reply has finished and returns its monotonic time."""
    cpu0, sampler, snd0 = cpu_seconds(pid), SwitchSampler(pid).start(), cpu_seconds(sound_server_pid)
    reply_end_s = reply_end()
    time.sleep(max(0.0, start_s + window_s - time.monotonic()))
    cpu_s, snd_s = cpu_seconds(pid) - cpu0, cpu_seconds(sound_server_pid) - snd0
    wakeups = sum(t.switches for t in sampler.stop())
    return {"cpu_s": cpu_s, "cpu_pct": pct_of_core(cpu_s, window_s), "wakeups_per_s": wakeups / window_s,
            "peak_rss_mib": peak_rss_mib(pid), "reply_end_s": reply_end_s - start_s,
            "late": reply_end_s > start_s + window_s - TAIL_MIN_S,
            "sound_server_cpu_pct": pct_of_core(snd_s, window_s)}


def pivoice_round(daemon, rig, question: Path, window_s: float) -> dict:
    mark = len(daemon.timeline())
    start_s = time.monotonic()
    daemon.ctl("press")
    feeder = rig.feed(question)
    figures = measure_window(daemon.process.pid, rig.proc.pid, start_s, window_s,
                             lambda: daemon.wait_for("reply_played", REPLY_TIMEOUT_S, after=mark)["t"])
    feeder.wait(timeout=30)
    daemon.wait_for("ended", timeout_s=30, after=mark)   # the idle timeout ends it, after the window
    return figures


def reference_round(stack, rig, question: Path, window_s: float, chunk_ms: int, log_path: Path) -> dict:
    client = ReferenceProcess(stack, rig.env(), chunk_ms, duration_s=window_s + READY_TIMEOUT_S + 10,
                              log_path=log_path)
    try:
        client.wait_for("ready", READY_TIMEOUT_S)
        start_s = time.monotonic()
        feeder = rig.feed(question)
        figures = measure_window(client.process.pid, rig.proc.pid, start_s, window_s,
                                 lambda: client.wait_for("reply_done", REPLY_TIMEOUT_S)["t"])
        feeder.wait(timeout=30)
        return figures
    finally:
        client.stop()


def run_compare(work: Path, question: Path, runs: int, window_s: float, configure=lambda config: None) -> dict:
    """`configure(config)` applies the bench's tuning options to pivoice's config."""
    from support.pulse import PulseRig
    from support.stack import offline_stack, running
    (work / "timeline.jsonl").unlink(missing_ok=True)   # the daemon appends: start with ours only
    rig = PulseRig().start()
    rounds: list[dict] = []
    try:
        # the reference client mints a key per run: the backend's default 6 a minute is too few
        with offline_stack(work, "--reply-text", REPLY_TEXT, mint_rate_per_min=120) as stack:
            # pivoice keeps listening past the window, so both stream the mic for all of it
            config = stack.config(mic="default", speaker="default", conversation={"idle_timeout_s": PIVOICE_IDLE_S})
            configure(config)
            with running(stack.daemon(config, env=rig.env())) as daemon:
                time.sleep(1.0)   # let start-up settle before the first window
                for r in range(runs):
                    order = CLIENTS[r % 3:] + CLIENTS[:r % 3]
                    for client in order:
                        if client == "pivoice":
                            fig = pivoice_round(daemon, rig, question, window_s)
                        else:
                            chunk_ms = 20 if client.endswith("20ms") else 100
                            fig = reference_round(stack, rig, question, window_s, chunk_ms, work / f"{client}.stderr")
                        rounds.append({"round": r + 1, "client": client, **fig})
                        print(f"  round {r + 1} {client:16s} CPU {fig['cpu_pct']:.2f} % of one core, "
                              f"{fig['wakeups_per_s']:.0f} wakeups/s, reply ended at {fig['reply_end_s']:.1f} s"
                              + (" (LATE)" if fig["late"] else ""), flush=True)
                        time.sleep(0.5)
    finally:
        rig.stop()
    return summarize(rounds, runs, window_s)


def summarize(rounds: list[dict], runs: int, window_s: float) -> dict:
    """Median per client over the rounds; ratios pivoice / reference from those medians, and the
    range of the per-round ratios (each round's clients ran back to back)."""
    per_client = {}
    for client in CLIENTS:
        mine = [r for r in rounds if r["client"] == client]
        per_client[client] = {
            "cpu_pct_median": median_max([r["cpu_pct"] for r in mine])[0],
            "cpu_pct_all": [round(r["cpu_pct"], 3) for r in mine],
            "wakeups_per_s_median": median_max([r["wakeups_per_s"] for r in mine])[0],
            "peak_rss_mib_max": median_max([r["peak_rss_mib"] for r in mine])[1],
            "sound_server_cpu_pct_median": median_max([r["sound_server_cpu_pct"] for r in mine])[0],
            "late_rounds": sum(r["late"] for r in mine),
        }
    ratios = {}
    for ref in CLIENTS[1:]:
        per_round = [ratio(p["cpu_pct"], q["cpu_pct"]) for p, q in zip(
            [r for r in rounds if r["client"] == "pivoice"], [r for r in rounds if r["client"] == ref])]
        ratios[ref] = {"cpu_ratio": ratio(per_client["pivoice"]["cpu_pct_median"], per_client[ref]["cpu_pct_median"]),
                       "cpu_ratio_per_round": [round(x, 3) for x in per_round],
                       "rss_ratio": ratio(per_client["pivoice"]["peak_rss_mib_max"], per_client[ref]["peak_rss_mib_max"])}
    best_ref = min(CLIENTS[1:], key=lambda c: per_client[c]["cpu_pct_median"])
    return {"runs": runs, "window_s": window_s, "clients": per_client, "ratios": ratios, "best_reference": best_ref,
            "target_ratio": 0.5, "rounds": rounds}


def report_compare(c: dict) -> None:
    cl = c["clients"]
    print(f"\n== pivoice vs. the reference client: {c['runs']} interleaved rounds, {c['window_s']:.0f} s window each "
          "(question fed -> reply done + tail), PulseAudio rig, same dev-server reply")
    print(f"  {'':34s}" + "".join(f"{name:>18s}" for name in CLIENTS))
    rows = [("CPU, % of one core (median)", "cpu_pct_median", "{:.2f}"),
            ("  = % per audio second", "cpu_pct_median", "{:.2f}"),
            ("wakeups/s (median)", "wakeups_per_s_median", "{:.0f}"),
            ("peak RSS, MiB", "peak_rss_mib_max", "{:.1f}"),
            ("PulseAudio server CPU, %", "sound_server_cpu_pct_median", "{:.2f}"),
            ("rounds whose reply ran late", "late_rounds", "{}")]
    for label, key, fmt in rows:
        print(f"  {label:34s}" + "".join(f"{fmt.format(cl[name][key]):>18s}" for name in CLIENTS))
    for ref, r in c["ratios"].items():
        mark = ""
        if ref == c["best_reference"]:
            mark = " <- best reference: target <= 0.5, " + ("ok" if r["cpu_ratio"] <= c["target_ratio"] else "OVER TARGET")
        print(f"  pivoice / {ref:16s} CPU {r['cpu_ratio']:.2f} (per round {r['cpu_ratio_per_round']}), "
              f"peak RSS {r['rss_ratio']:.2f}{mark}")
    print("  CPU from /proc/PID/stat (10 ms ticks) over the same window per client; pivoice's window includes "
          "its key fetch and connect, the reference client connected before its window.")
