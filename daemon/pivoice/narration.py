"""How server events read in the log and the demo timeline: a Note per event worth telling.

Pure functions of the event (already checked by `realtime.events`: a field is
either absent/None or of the right type); the controller decides when they are
emitted.
"""

from __future__ import annotations

import json
import threading
import time

from pivoice import messages as m


def _at(ms: object) -> str:
    return f" at {ms} ms" if ms is not None else ""


# Server events that only show up in the log/timeline: type -> (note kind, text from the event).
_NOTES = {
    "session.updated": ("session", lambda d: "session configured"),
    "input_audio_buffer.speech_started": ("speech_start", lambda d: f"server heard speech{_at(d.get('audio_start_ms'))}"),
    "input_audio_buffer.speech_stopped": ("speech_stop", lambda d: f"server heard speech stop{_at(d.get('audio_end_ms'))}"),
    "input_audio_buffer.committed": ("committed", lambda d: "user turn committed"),
    "response.created": ("response", lambda d: "response started"),
    "response.output_audio_transcript.done": ("assistant", lambda d: f"assistant: {d.get('transcript') or ''}"),
    "response.output_text.done": ("assistant", lambda d: f"assistant (text): {d.get('text') or ''}"),
    "conversation.item.input_audio_transcription.completed": ("user", lambda d: f"user: {d.get('transcript') or ''}"),
}


def note_for(kind: str, data: dict) -> m.Note | None:
    entry = _NOTES.get(kind)
    return m.Note(entry[0], entry[1](data)) if entry else None


# Barge-in races (a cancel after the response ended, a truncate of a finished item) are harmless.
_HARMLESS_ERRORS = ("response_cancel_not_active",)


def error_note(err: dict) -> m.Note:
    """An `error` event: logged with its code; the session stays up."""
    code = err.get("code") or err.get("type") or "unknown"
    message = err.get("message") or "(no message)"
    harmless = code in _HARMLESS_ERRORS or (err.get("event_id") and "truncate" in message.lower())
    return m.Note("server_error", f"server error {code}: {message}", "debug" if harmless else "warning")


def timeline_writer(stream):
    """`pivoice run --timeline`: one JSON line per controller note, for the demo and the tests.
    Called from the controller thread and edge threads (light changes), hence the lock."""
    lock = threading.Lock()

    def on_note(note: m.Note) -> None:
        with lock:
            stream.write(json.dumps({"t": round(time.monotonic(), 4), "kind": note.kind, "text": note.text}) + "\n")
            stream.flush()
    return on_note
