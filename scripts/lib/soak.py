"""`scripts/soak`: N back-to-back conversations against the offline stack, watching for leaks.

Dev server, token backend and the real daemon with WAV devices on loopback (the same launchers as
`scripts/bench` and the end-to-end tests). Each conversation: press (control socket), a short
spoken question from the WAV mic, the dev server's spoken reply played to the WAV speaker, and a
second press once the reply has played (ends it as a user would, instead of waiting out the idle
timeout). Every `--every` conversations it samples the daemon's RSS, open fds, threads and the
size of `ctl status`; it fails (exit 1) if RSS grew more than `--max-rss-growth-mib` from the first
sample to the last, or if fds, threads or the status size are not flat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))   # the process launchers are shared with the e2e tests

from support.fixtures_audio import make_speech_wav  # noqa: E402
from support.stack import offline_stack, running    # noqa: E402

QUESTION = "What time is it?"
REPLY = "It is noon."
CONVERSATION_TIMEOUT_S = 30.0
# Counters gain digits (99 -> 100 conversations, bytes sent) and recent latencies vary in width: not
# growth. With every number written as 0, the status must be exactly the same size every time.
STATUS_SLACK_BYTES = 64
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class Timeline:
    """Reads the daemon's --timeline file incrementally (it grows by ~15 lines a conversation)."""

    def __init__(self, path: Path) -> None:
        self._path, self._offset, self._partial = path, 0, b""

    def new_entries(self) -> list[dict]:
        if not self._path.exists():
            return []
        with open(self._path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, kinds: set[str], timeout_s: float, process) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in self.new_entries():
                if entry["kind"] in kinds:
                    return entry
            if process.poll() is not None:
                raise RuntimeError(f"the daemon exited with {process.returncode}")
            time.sleep(0.02)
        raise TimeoutError(f"none of {sorted(kinds)} within {timeout_s} s")


def open_fds(pid: int) -> int:
    """The fewest fds over a few looks: a control-socket connection being torn down is not a leak."""
    counts = []
    for _ in range(3):
        counts.append(len(os.listdir(f"/proc/{pid}/fd")))
        time.sleep(0.05)
    return min(counts)


def sample(pid: int, daemon, conversation: int, started_s: float) -> dict:
    status_line = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in status_line}
    for _ in range(20):   # not in the middle of a key refresh ("fetching" has no next_refresh_in_s)
        status = daemon.status()
        if status["token"].get("state") == "ok":
            break
        time.sleep(0.05)
    text = json.dumps(status, separators=(",", ":"))
    return {"conversation": conversation, "elapsed_s": round(time.monotonic() - started_s, 1),
            "rss_kib": int(fields["VmRSS"][0]), "fds": open_fds(pid),
            "threads": int(fields["Threads"][0]),
            "status_bytes": len(text), "status_shape_bytes": len(NUMBER.sub("0", text)),
            "last_end_code": status.get("last_end_code")}


def converse(daemon, timeline: Timeline) -> str:
    """One conversation; returns how it ended (the end code from `ctl status`)."""
    daemon.ctl("press")
    timeline.wait_for({"reply_played", "ended"}, CONVERSATION_TIMEOUT_S, daemon.process)
    if daemon.status()["state"] != "idle":
        daemon.ctl("press")
        timeline.wait_for({"ended"}, CONVERSATION_TIMEOUT_S, daemon.process)
    return daemon.status()["last_end_code"]


def verdict(samples: list[dict], max_growth_mib: float) -> list[str]:
    first, last = samples[0], samples[-1]
    problems = []
    growth_mib = (last["rss_kib"] - first["rss_kib"]) / 1024
    if growth_mib > max_growth_mib:
        problems.append(f"RSS grew {growth_mib:.2f} MiB from conversation {first['conversation']} to "
                        f"{last['conversation']} (limit {max_growth_mib} MiB)")
    for key in ("fds", "threads"):
        values = {s[key] for s in samples}
        if len(values) > 1:
            problems.append(f"{key} not flat: {sorted(values)}")
    sizes = [s["status_bytes"] for s in samples]
    if max(sizes) - min(sizes) > STATUS_SLACK_BYTES:
        problems.append(f"ctl status size not flat: {min(sizes)}..{max(sizes)} bytes")
    shapes = {s["status_shape_bytes"] for s in samples}
    if len(shapes) > 1:
        problems.append(f"ctl status shape not flat (numbers as 0): {sorted(shapes)} bytes")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--mode", choices=("wav",), default="wav")
    parser.add_argument("--every", type=int, default=50, help="sample every this many conversations")
    parser.add_argument("--max-rss-growth-mib", type=float, default=2.0)
    parser.add_argument("--out", default=str(ROOT / "out"))
    args = parser.parse_args()
    if args.conversations < args.every or args.every < 1:
        parser.error("--conversations must be at least --every (>= 1)")
    out = Path(args.out).resolve()
    work = out / "soak"
    work.mkdir(parents=True, exist_ok=True)
    question = make_speech_wav(work / "question.wav", QUESTION, lead_silence_s=0.05, tail_silence_s=0.2)
    print(f"pivoice soak: {args.conversations} conversations, {args.mode} devices, sample every {args.every}",
          flush=True)
    samples: list[dict] = []
    ends: dict[str, int] = {}
    with offline_stack(work, "--reply-text", REPLY, "--audio-pace", "0") as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{work / 'reply.wav'}",
                              conversation={"idle_timeout_s": 3}, log_level="warning")
        with running(stack.daemon(config)) as daemon:
            pid = daemon.process.pid
            timeline = Timeline(daemon.timeline_path)
            started_s = time.monotonic()
            print(f"{'conv':>5} {'elapsed_s':>9} {'rss_kib':>8} {'fds':>4} {'threads':>7} {'status_B':>8} "
                  f"{'shape_B':>7}", flush=True)
            for n in range(1, args.conversations + 1):
                code = converse(daemon, timeline)
                ends[code] = ends.get(code, 0) + 1
                if n % args.every == 0:
                    time.sleep(0.2)   # let the last conversation's threads finish exiting
                    s = sample(pid, daemon, n, started_s)
                    samples.append(s)
                    print(f"{n:>5} {s['elapsed_s']:>9} {s['rss_kib']:>8} {s['fds']:>4} {s['threads']:>7} "
                          f"{s['status_bytes']:>8} {s['status_shape_bytes']:>7}", flush=True)
            total_s = time.monotonic() - started_s
            warnings = [line for line in daemon.stderr_text().splitlines() if " WARNING " in line or " ERROR " in line]
    problems = verdict(samples, args.max_rss_growth_mib)
    result = {"conversations": args.conversations, "mode": args.mode, "total_s": round(total_s, 1),
              "per_conversation_s": round(total_s / args.conversations, 2), "end_codes": ends,
              "rss_growth_kib": samples[-1]["rss_kib"] - samples[0]["rss_kib"], "samples": samples,
              "daemon_warnings": len(warnings), "problems": problems}
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.conversations} conversations in {total_s:.0f} s ({result['per_conversation_s']} s each); "
          f"ends: {ends}; RSS {samples[0]['rss_kib']} -> {samples[-1]['rss_kib']} KiB "
          f"({result['rss_growth_kib']:+d} KiB from conversation {samples[0]['conversation']}); "
          f"daemon warnings/errors: {len(warnings)}")
    for line in warnings[:5]:
        print("  " + line)
    print("FAIL: " + "; ".join(problems) if problems else "ok: RSS, fds, threads and ctl status size flat")
    print(f"written {out / 'soak.json'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
