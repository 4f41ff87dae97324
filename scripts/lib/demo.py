"""The offline demo behind `scripts/demo`: one spoken exchange, printed as a timeline.

`--tools`: the dev server is scripted to call the daemon's `get_time` built-in and to speak the time
from the tool's output, so the timeline shows the call, its result going back and the spoken answer.
Exit status 0 only if the daemon really played a spoken reply into the WAV speaker (and, with
`--tools`, ran the tool before that reply).
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))   # the process launchers are shared with the e2e tests

from support.fixtures_audio import make_speech_wav  # noqa: E402
from support.stack import offline_stack, running    # noqa: E402

QUESTION = "Hello! What can you tell me about the weather in the kitchen today?"
TOOLS_QUESTION = "What time is it?"
# get_time answers {time: ISO 8601 local time, weekday, timezone, utc_offset} (tools/builtin.py)
TOOLS_SCRIPT = {"turns": [{"calls": [{"name": "get_time", "arguments": {}}],
                           "then_say": "It is {output.time}, a {output.weekday}."}]}


def settle(daemon, timeout_s: float = 2.0) -> None:
    """The light goes idle a few ms after the end's line: wait for it, or stopping the daemon at once
    can cut it from the timeline (the light is a mock LED here; a real one is switched off at stop)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entries = daemon.timeline()
        ended = max(i for i, e in enumerate(entries) if e["kind"] == "ended")
        if any(e["kind"] == "light" and e["text"] == "light: idle" for e in entries[ended:]):
            return
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--question", default=None, help=f"what is said into the mic (default: {QUESTION!r}, "
                                                          f"with --tools {TOOLS_QUESTION!r})")
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--parrot", action="store_true", help="the dev server replies with your own audio")
    parser.add_argument("--tools", action="store_true",
                        help="the model (dev server, scripted) calls the daemon's get_time tool and says the time")
    args = parser.parse_args()
    if args.tools and args.parrot:
        parser.error("--tools and --parrot do not go together: the scripted reply is spoken, not echoed")
    if args.question is None:
        args.question = TOOLS_QUESTION if args.tools else QUESTION
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("timeline.jsonl", "reply.wav", "script.yaml"):
        (out / old).unlink(missing_ok=True)

    question = make_speech_wav(out / "question.wav", args.question, rate_hz=16000, lead_silence_s=0.2,
                               tail_silence_s=2.5)
    reply = out / "reply.wav"
    print(f"question (mic):  {question}  \"{args.question}\"")
    print("starting the dev server (Realtime stand-in), the token backend and the daemon ...")
    dev_args = ["--mode", "parrot"] if args.parrot else []
    # the earcons and the status light (an LED on GPIO12 of gpiozero's mock pins): their lines join the timeline
    sections = {"feedback": {"earcons": True, "light": {"kind": "led", "pin": "GPIO12"}}}
    if args.tools:
        script = out / "script.yaml"
        script.write_text(yaml.safe_dump(TOOLS_SCRIPT, sort_keys=False))
        dev_args = ["--script", str(script)]
        sections["tools"] = {"builtin": {"time": {"enabled": True}}}
        print(f"tools: the daemon runs get_time; the dev server's script ({script}) calls it and says the time")
    with offline_stack(out, *dev_args) as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{reply}", **sections)
        with running(stack.daemon(config)) as daemon:
            print(f"daemon ready; pressing the button (pivoice ctl press --socket {daemon.socket_path})\n")
            daemon.ctl("press")
            try:
                daemon.wait_for("ended", timeout_s=60)
                settle(daemon)
            except AssertionError as exc:
                print(exc, file=sys.stderr)
            status = daemon.status()
        timeline = daemon.timeline()

    t0 = timeline[0]["t"] if timeline else 0.0
    for entry in timeline:
        print(f"  {1000 * (entry['t'] - t0):7.0f} ms  {entry['text']}")
    earcons = [e["text"].removeprefix("earcon: ") for e in timeline if e["kind"] == "earcon"]
    lights = [e["text"].removeprefix("light: ") for e in timeline if e["kind"] == "light"]
    print(f"\nearcons played: {', '.join(earcons) or 'none'}")
    print(f"status light:   {' -> '.join(lights) or 'never changed'}")
    metrics = status["metrics"]
    played = [e["text"] for e in timeline if e["kind"] == "reply_played"]
    print(f"\nreply (speaker): {reply}  ({played[0] if played else 'nothing played'}; the file holds the "
          f"speaker's whole output, {_duration_ms(reply):.0f} ms)")
    for label, key in (("press -> first audio on the wire", "press_to_first_append_ms"),
                       ("first reply delta -> speaker", "delta_to_speaker_ms")):
        if metrics[key]["count"]:
            print(f"{label}: {metrics[key]['recent_ms'][0]:.1f} ms")
    if not played or _duration_ms(reply) < 300:
        print("FAILED: no reply was played", file=sys.stderr)
        return 1
    if args.tools:
        return _check_tool_exchange(timeline)
    return 0


def _check_tool_exchange(timeline: list[dict]) -> int:
    """The tool ran, its result went back, and a reply was played after that."""
    kinds = [e["kind"] for e in timeline]
    if "tool_results" not in kinds or "reply_played" not in kinds[kinds.index("tool_results"):]:
        print("FAILED: the get_time call and a spoken answer after its result are not in the timeline",
              file=sys.stderr)
        return 1
    said = [e["text"].removeprefix("assistant: ") for e in timeline[kinds.index("tool_results"):]
            if e["kind"] == "assistant"]
    print(f"tool exchange: get_time ran; the reply said: {said[0] if said else '(no transcript)'}")
    return 0


def _duration_ms(path: Path) -> float:
    if not path.exists():
        return 0.0
    with wave.open(str(path)) as w:
        return 1000.0 * w.getnframes() / w.getframerate()


if __name__ == "__main__":
    sys.exit(main())
