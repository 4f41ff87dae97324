"""A reference Realtime voice client, written the way the `openai` SDK's documentation shows one.

Only `scripts/bench --compare` runs it, as its own process, to measure what a straightforward
client costs on the same rig as pivoice; the daemon never imports it. It does what a user following
the docs would do:

* an ephemeral key from the device's token backend (`POST /v1/realtime/client_secrets`, HTTP Basic
  with the device id and secret the offline stack gives the daemon), as a device client must: it
  never holds the API key;
* `OpenAI(api_key=<ek_...>, base_url=...)` and the sync `client.realtime.connect(model=...)`;
  `session.update` with the GA shape: PCM 24 kHz both ways, server VAD;
* a PyAudio microphone opened at 24 kHz (PulseAudio resamples the 16 kHz virtual mic), blocking
  `stream.read` of `--chunk-ms`, every chunk sent with `input_audio_buffer.append(audio=base64)`,
  continuously (no local gate);
* a receive loop in its own thread writing `response.output_audio.delta` to a PyAudio output
  stream at 24 kHz mono (PulseAudio resamples to the 48 kHz stereo speaker).

Threads: the main thread reads the mic and sends; the receive thread plays. Runs for `--duration-s`
or until `--after-reply-s` after the first reply is done, then exits 0. Prints one JSON line per
milestone on stdout ({"event": "ready" | "reply_audio" | "reply_done" | "exit", "t": monotonic s}).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
import urllib.request

RATE_HZ = 24000
MODEL = "gpt-realtime"
_print_lock = threading.Lock()


def say(event: str, **fields) -> None:
    with _print_lock:
        print(json.dumps({"event": event, "t": round(time.monotonic(), 4), **fields}), flush=True)


def fetch_ephemeral_key(backend_url: str, device_id: str, secret: str, timeout_s: float = 10.0) -> str:
    basic = base64.b64encode(f"{device_id}:{secret}".encode()).decode("ascii")
    request = urllib.request.Request(backend_url.rstrip("/") + "/v1/realtime/client_secrets", data=b"{}",
                                     method="POST", headers={"Authorization": f"Basic {basic}",
                                                             "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)["value"]


def receive(connection, speaker, session_ready: threading.Event, reply_done: threading.Event) -> None:
    """The receive loop, as the docs write it: iterate the connection, play audio deltas."""
    speaking = False
    for event in connection:
        if event.type == "session.updated":
            session_ready.set()
        elif event.type == "response.output_audio.delta":
            if not speaking:
                speaking = True
                say("reply_audio")
            speaker.write(base64.b64decode(event.delta))
        elif event.type == "response.done":
            speaking = False
            say("reply_done")
            reply_done.set()
        elif event.type == "error":
            say("error", message=event.error.message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend-url", required=True, help="token backend, e.g. http://127.0.0.1:8081")
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--base-url", required=True, help="Realtime API base, e.g. http://127.0.0.1:8765/v1")
    parser.add_argument("--chunk-ms", type=int, default=20, choices=(10, 20, 40, 50, 100, 200))
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--after-reply-s", type=float, default=None,
                        help="exit this long after the first reply is done (default: run --duration-s)")
    args = parser.parse_args(argv)

    import pyaudio
    from openai import OpenAI

    with open(args.secret_file) as f:
        secret = f.read().strip()
    key = fetch_ephemeral_key(args.backend_url, args.device_id, secret)
    client = OpenAI(api_key=key, base_url=args.base_url)
    chunk_frames = RATE_HZ * args.chunk_ms // 1000
    pa = pyaudio.PyAudio()
    mic = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE_HZ, input=True, frames_per_buffer=chunk_frames)
    speaker = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE_HZ, output=True)
    session_ready, reply_done = threading.Event(), threading.Event()
    receiver = None
    deadline = time.monotonic() + args.duration_s
    try:
        with client.realtime.connect(model=MODEL) as connection:
            connection.session.update(session={
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"format": {"type": "audio/pcm", "rate": RATE_HZ},
                              "turn_detection": {"type": "server_vad"}},
                    "output": {"format": {"type": "audio/pcm", "rate": RATE_HZ}},
                },
            })
            receiver = threading.Thread(target=receive, args=(connection, speaker, session_ready, reply_done),
                                        name="receive", daemon=True)
            receiver.start()
            if not session_ready.wait(10):
                say("error", message="no session.updated within 10 s")
                return 1
            say("ready", chunk_ms=args.chunk_ms)
            while time.monotonic() < deadline:
                data = mic.read(chunk_frames, exception_on_overflow=False)
                connection.input_audio_buffer.append(audio=base64.b64encode(data).decode("ascii"))
                if args.after_reply_s is not None and reply_done.is_set():
                    deadline = min(deadline, time.monotonic() + args.after_reply_s)
                    args.after_reply_s = None
    except KeyboardInterrupt:
        pass
    finally:
        if receiver is not None:
            receiver.join(2.0)   # the socket is closed: the loop ends; then the speaker may go
        mic.close()
        speaker.close()
        pa.terminate()
    say("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
