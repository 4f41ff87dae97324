"""The offline demo behind `scripts/demo`: one spoken exchange, printed as a timeline.

Exit status 0 only if the daemon really played a spoken reply into the WAV speaker.
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))   # the process launchers are shared with the e2e tests

from support.fixtures_audio import make_speech_wav  # noqa: E402
from support.stack import offline_stack, running    # noqa: E402

QUESTION = "Hello! What can you tell me about the weather in the kitchen today?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--question", default=QUESTION)
    parser.add_argument("--out", default=str(ROOT / "out" / "demo"))
    parser.add_argument("--parrot", action="store_true", help="the dev server replies with your own audio")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("timeline.jsonl", "reply.wav"):
        (out / old).unlink(missing_ok=True)

    question = make_speech_wav(out / "question.wav", args.question, rate_hz=16000, lead_silence_s=0.2,
                               tail_silence_s=2.5)
    reply = out / "reply.wav"
    print(f"question (mic):  {question}  \"{args.question}\"")
    print("starting the dev server (Realtime stand-in), the token backend and the daemon ...")
    with offline_stack(out, *(["--mode", "parrot"] if args.parrot else [])) as stack:
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{reply}")
        with running(stack.daemon(config)) as daemon:
            print(f"daemon ready; pressing the button (pivoice ctl press --socket {daemon.socket_path})\n")
            daemon.ctl("press")
            try:
                daemon.wait_for("ended", timeout_s=60)
            except AssertionError as exc:
                print(exc, file=sys.stderr)
            status = daemon.status()
        timeline = daemon.timeline()

    t0 = timeline[0]["t"] if timeline else 0.0
    for entry in timeline:
        print(f"  {1000 * (entry['t'] - t0):7.0f} ms  {entry['text']}")
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
    return 0


def _duration_ms(path: Path) -> float:
    if not path.exists():
        return 0.0
    with wave.open(str(path)) as w:
        return 1000.0 * w.getnframes() / w.getframerate()


if __name__ == "__main__":
    sys.exit(main())
