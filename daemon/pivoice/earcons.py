"""Earcons: the short sounds that say "listening", "thinking", "ended", "error" (and the timer chime).

Generated with numpy like chimes.py (nothing shipped), in the session's wire format, or a WAV from
the config converted to it once at build time. Each cue is a different shape so they cannot be
confused: listening rises, ended falls, thinking is two soft ticks, error is a low triple buzz.

Playing them (`EarconPlayer`) goes straight to the speaker behind the downlink, with the output
volume applied, and never through the reply's bookkeeping: an earcon is not a reply, so it neither
marks the controller `playing` (half duplex keeps the mic open over a listening beep) nor counts as
heard reply audio. In a conversation it joins the open speaker's queue (a reply that follows
queues behind it); idle (ended, error: the conversation has just closed its devices) the player
opens the speaker on its own, and closes it when its audio thread reports the sound played out.
The press's listening cue waits for the first audio sent (or LISTENING_HOLD_S): starting the
speaker stream then costs the press -> first append path nothing.

Generators: pure, cached, any thread. `EarconPlayer`: controller thread only (runtime.py); the
speaker's audio thread only posts `EarconDone`.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import soxr

from pivoice import chimes
from pivoice import messages as m
from pivoice.audio import codec
from pivoice.feedback_config import CUES, FeedbackConfig, WavClip

log = logging.getLogger(__name__)
LISTENING, THINKING, ENDED, ERROR, TIMER = CUES
# The listening earcon waits for the press's first audio sent, or this long: its speaker start-up
# must not compete with the mic and the socket on the way there (bench: +4.6 ms median otherwise),
# and under 0.1 s a beep still feels like the answer to the press.
LISTENING_HOLD_S = 0.08
_PEAK = 0.3 * 32767   # like the timer chime: below full scale, the output volume applies on top


@dataclass(frozen=True)
class Cues:
    """What the controller knows of the earcons (`Settings.cues`). The default is today's device:
    the timer chime only."""
    enabled: frozenset = frozenset({TIMER})
    timer_clip: bytes | None = None   # wire format; None: the generated chime (chimes.py)

    def timer(self, fmt: str) -> bytes:
        return self.timer_clip if self.timer_clip is not None else chimes.timer_chime(fmt)

    def timer_s(self, fmt: str) -> float:
        return len(self.timer(fmt)) / codec.bytes_per_ms(fmt) / 1000


@dataclass(frozen=True)
class EarconDone:
    """The idle speaker opened for an earcon has played it out (or failed): close it."""
    opening: int
    error: str | None = None


# ---- the sounds ------------------------------------------------------------------------

def _tone(rate_hz: int, freq_hz: float, dur_s: float, decay_per_s: float = 0.0, harmonic: float = 0.25):
    t = np.arange(int(dur_s * rate_hz)) / rate_hz
    # 4 ms ramps at both ends: no click when the stream starts or stops on it
    ramp = np.minimum(1.0, np.minimum(t, dur_s - t) / 0.004)
    wave = np.sin(2 * np.pi * freq_hz * t) + harmonic * np.sin(2 * np.pi * 2 * freq_hz * t)
    return ramp * np.exp(-t * decay_per_s) * wave / (1 + harmonic)


def _join(rate_hz: int, parts) -> np.ndarray:
    """(start_s, samples) parts mixed into one clip."""
    end = max(int(start_s * rate_hz) + len(part) for start_s, part in parts)
    out = np.zeros(end)
    for start_s, part in parts:
        start = int(start_s * rate_hz)
        out[start:start + len(part)] += part
    return out


def _shape(cue: str, rate_hz: int) -> np.ndarray:
    if cue == LISTENING:   # rising G5 -> D6: "go ahead" (160 ms)
        return _join(rate_hz, [(0.0, _tone(rate_hz, 784.0, 0.07)), (0.08, _tone(rate_hz, 1174.7, 0.08, 8))])
    if cue == THINKING:    # two soft, quick ticks at A5 (120 ms)
        tick = 0.6 * _tone(rate_hz, 1760.0, 0.04, 30, harmonic=0.0)
        return _join(rate_hz, [(0.0, tick), (0.08, tick)])
    if cue == ENDED:       # falling D6 -> G5: the listening cue turned round (200 ms)
        return _join(rate_hz, [(0.0, _tone(rate_hz, 1174.7, 0.07)), (0.08, _tone(rate_hz, 784.0, 0.12, 10))])
    if cue == ERROR:       # low, rough triple buzz (420 ms): unlike every other sound the device makes
        buzz = _tone(rate_hz, 220.0, 0.1, harmonic=0.0) + 0.5 * _tone(rate_hz, 233.1, 0.1, harmonic=0.0)
        t = np.arange(len(buzz)) / rate_hz
        fade = np.minimum(1.0, np.minimum(t, 0.1 - t) / 0.01)   # the clipping steepens the tone's own ramps
        buzz = fade * np.tanh(2.5 * buzz) / np.tanh(2.5)
        return _join(rate_hz, [(0.0, buzz), (0.16, buzz), (0.32, buzz)])
    raise ValueError(f"no generated earcon {cue!r}")


@functools.cache
def generated(cue: str, fmt: str) -> bytes:
    """The generated sound of `cue` in wire format `fmt` (the timer cue is chimes.timer_chime)."""
    if cue == TIMER:
        return chimes.timer_chime(fmt)
    samples = _shape(cue, codec.wire_rate_hz(fmt))
    return codec.encode(fmt, np.round(samples * _PEAK).astype("<i2").tobytes())


def from_wav(clip: WavClip, fmt: str) -> bytes:
    rate_hz = codec.wire_rate_hz(fmt)
    samples = np.frombuffer(clip.pcm16, dtype="<i2")
    if clip.rate_hz != rate_hz:
        samples = soxr.resample(samples, clip.rate_hz, rate_hz, quality="HQ")
    return codec.encode(fmt, np.asarray(samples, dtype="<i2").tobytes())


def wire_clips(feedback: FeedbackConfig, fmt: str) -> dict[str, bytes]:
    """Every enabled cue's sound in wire format, converted once (app.py, at build)."""
    clips = {}
    for cue, value in feedback.earcons:
        if value is True:
            clips[cue] = generated(cue, fmt)
        elif isinstance(value, WavClip):
            clips[cue] = from_wav(value, fmt)
    return clips


def controller_cues(feedback: FeedbackConfig, clips: dict[str, bytes]) -> Cues:
    value = feedback.earcon(TIMER)
    return Cues(feedback.enabled_cues(), clips.get(TIMER) if isinstance(value, WavClip) else None)


# ---- playing them ----------------------------------------------------------------------

class EarconPlayer:
    """Controller thread only. `lock` is the play path's (runtime.py): the socket's reader thread
    writes reply deltas to the same speaker under it."""

    def __init__(self, clips: dict[str, bytes], fmt: str, downlink, lock, post: Callable[[object], None]):
        self._clips, self._fmt, self._downlink, self._lock, self._post = clips, fmt, downlink, lock, post
        self._at_rate: dict[tuple[str, int], bytes] = {}
        self._openings = 0
        self.tail_open = False     # the speaker is open for an earcon alone (no conversation)
        self.played_at_s: float | None = None   # when the last earcon was queued, for stale drains
        self.held: tuple[str, float] | None = None   # (cue, play by): waiting for the first append

    def offer(self, cue: str | None, now_s: float, *, appended: bool, audio_open: bool,
              speaker_open: bool) -> list[str]:
        """The runtime's one entry: `cue` to play (None: only a held one that is due). A press's
        listening cue is held until the first append (`appended`) or LISTENING_HOLD_S; a held cue
        still sounds before any later one. Returns the cues queued, in order."""
        if cue == LISTENING and cue in self._clips and audio_open and not appended:
            self.held = (cue, now_s + LISTENING_HOLD_S)
            return []
        due = self.due(now_s, appended=appended or cue is not None)
        return [c for c in (due, cue) if c is not None and self.play(c, speaker_open=speaker_open, now_s=now_s)]

    def due(self, now_s: float, appended: bool) -> str | None:
        """The held cue, once the first audio went out or its time has come (then no longer held)."""
        if self.held is None or not (appended or now_s >= self.held[1]):
            return None
        cue, self.held = self.held[0], None
        return cue

    def wake_at(self, wake_at_s: float | None) -> float | None:
        """The controller thread's next wake-up, no later than a held cue's time."""
        if self.held is None:
            return wake_at_s
        return self.held[1] if wake_at_s is None else min(wake_at_s, self.held[1])

    def play(self, cue: str, *, speaker_open: bool, now_s: float) -> bool:
        """Queue `cue` on the conversation's open speaker, or (none open) on one opened for it.
        False if it could not be played (logged; never raised: a sound is not worth a conversation)."""
        if cue not in self._clips:
            return False
        try:
            if not speaker_open and not self.tail_open:
                self._open_tail()
            with self._lock:
                speaker = self._downlink.speaker
                speaker.write(self._downlink.volume.apply(self._speaker_pcm(cue, speaker.sample_rate_hz)))
        except Exception as exc:   # no speaker now (unplugged, busy): the conversation goes on without the cue
            log.warning("earcon %s: cannot play it: %s", cue, exc)
            self.close_tail()
            return False
        self.played_at_s = now_s
        return True

    def absorbs(self, event: object, reply_begun_at_s: float | None) -> bool:
        """The runtime's loop asks of each event: True when it is the player's own (the idle speaker's
        `EarconDone`, handled here) or an earcon's drain the controller must never see."""
        if isinstance(event, EarconDone):
            self.done(event)
            return True
        return isinstance(event, m.PlaybackDrained) and self.stale_drain(event.at_s, reply_begun_at_s)

    def stale_drain(self, drained_at_s: float, reply_begun_at_s: float | None) -> bool:
        """A speaker drain that happened before the current reply began is an earcon's, which the
        controller must not take for the end of that reply."""
        return (self.played_at_s is not None and reply_begun_at_s is not None
                and self.played_at_s <= reply_begun_at_s and drained_at_s < reply_begun_at_s)

    def done(self, ev: EarconDone) -> None:
        if ev.opening == self._openings and self.tail_open:
            if ev.error:
                log.warning("earcon: the speaker stopped: %s", ev.error)
            self.close_tail()

    def close_tail(self) -> None:
        """Before a conversation opens the speaker, and at shutdown: a tail still playing is cut."""
        if self.tail_open:
            self.tail_open = False
            try:
                self._downlink.close()
            except Exception:
                log.exception("earcon: error while closing the speaker")

    def _open_tail(self) -> None:
        self._openings += 1
        opening = self._openings
        self._downlink.open(lambda: self._post(EarconDone(opening)),
                            lambda reason: self._post(EarconDone(opening, reason)))
        self.tail_open = True

    def _speaker_pcm(self, cue: str, rate_hz: int) -> bytes:
        key = (cue, rate_hz)
        if key not in self._at_rate:
            pcm16 = np.frombuffer(codec.decode(self._fmt, self._clips[cue]), dtype="<i2")
            wire_hz = codec.wire_rate_hz(self._fmt)
            if rate_hz != wire_hz:
                pcm16 = soxr.resample(pcm16, wire_hz, rate_hz, quality="HQ")
            self._at_rate[key] = np.asarray(pcm16, dtype="<i2").tobytes()
        return self._at_rate[key]
