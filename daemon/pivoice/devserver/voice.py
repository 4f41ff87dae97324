"""Reply audio for the dev server: espeak-ng speech, the user's own audio (parrot) or a tone.

Replies are s16le mono at 24 kHz (the PCM wire rate) or, for parrot, at the
rate the user's audio arrived in. espeak-ng runs in a worker thread so the event
loop keeps serving other sessions. Methods are called from the ASGI event loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import subprocess

import numpy as np
import soxr

log = logging.getLogger(__name__)

REPLY_RATE_HZ = 24000
TONE_HZ = 440.0
TONE_S = 1.0
DEFAULT_REPLY_TEXT = "Hello! This is the pivoice dev server. I heard about {seconds:.1f} seconds of speech."
ESPEAK_TIMEOUT_S = 20.0
ESPEAK_WPM = 175


def tone_pcm16(rate_hz: int = REPLY_RATE_HZ, duration_s: float = TONE_S) -> bytes:
    t = np.arange(int(rate_hz * duration_s)) / rate_hz
    ramp = np.minimum(1.0, np.minimum(t, duration_s - t) / 0.01)  # 10 ms fades avoid clicks
    return (0.3 * 32767 * ramp * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2").tobytes()


def parse_wav(data: bytes) -> tuple[bytes, int]:
    """(s16le mono samples, rate) from espeak-ng's stdout WAV, whose size fields are bogus on a pipe."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not produce a WAV stream")
    pos, rate_hz = 12, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk_id == b"fmt ":
            channels, rate_hz, _, _, bits = struct.unpack("<HIIHH", data[pos + 10:pos + 24])
            if channels != 1 or bits != 16:
                raise ValueError(f"unexpected espeak-ng WAV format: {channels} ch, {bits} bit")
        elif chunk_id == b"data":
            samples = data[pos + 8:]
            return samples[:len(samples) // 2 * 2], int(rate_hz or 22050)
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk in espeak-ng output")


class VoiceSource:
    """Produces (transcript, pcm16, rate_hz) for one reply according to `mode`."""

    def __init__(self, mode: str, reply_text: str = DEFAULT_REPLY_TEXT, espeak_path: str | None = None) -> None:
        self.espeak_path = espeak_path if espeak_path is not None else shutil.which("espeak-ng")
        if mode == "speak" and not self.espeak_path:
            log.warning("espeak-ng is not installed; replying with a %g Hz tone instead of speech", TONE_HZ)
            mode = "tone"
        self.mode = mode
        self.reply_text = reply_text
        self._cache: dict[tuple[str, float], bytes] = {}

    def text_for(self, heard_s: float) -> str:
        try:
            return self.reply_text.format(seconds=heard_s)
        except (KeyError, IndexError, ValueError):
            return self.reply_text  # a custom text without (or with odd) placeholders is used verbatim

    async def reply(self, heard_s: float, user_pcm16: bytes, user_rate_hz: int, speed: float) -> tuple[str, bytes, int]:
        if self.mode == "parrot":
            return f"[parrot: {heard_s:.1f} seconds of your own audio]", user_pcm16, user_rate_hz
        text = self.text_for(heard_s)
        if self.mode == "tone":
            return text, tone_pcm16(), REPLY_RATE_HZ
        key = (text, speed)
        if key not in self._cache:
            self._cache[key] = await asyncio.to_thread(self._speak, text, speed)
        return text, self._cache[key], REPLY_RATE_HZ

    def _speak(self, text: str, speed: float) -> bytes:
        cmd = [self.espeak_path, "--stdout", "-s", str(int(ESPEAK_WPM * speed)), text]
        result = subprocess.run(cmd, capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=True)
        samples, rate_hz = parse_wav(result.stdout)
        pcm = np.frombuffer(samples, dtype="<i2")
        return soxr.resample(pcm, rate_hz, REPLY_RATE_HZ).astype("<i2").tobytes()
