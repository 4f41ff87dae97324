"""The conversation's audio devices, opened and closed together: the mic with its send path
(audio/sendpath.py) and, when replies are spoken, the speaker behind the downlink.

Thread: `open`, `check`, `close`, `is_current` from the controller thread (runtime.py). A device's
`on_error` (audio/ports.py) comes once from its audio thread when its stream dies and only posts an
`AudioStopped`, tagged with the opening it belongs to, so a late report cannot end the next
conversation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from pivoice import messages as m
from pivoice.audio.sendpath import SendPath

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AudioStopped:
    """A mic/speaker `on_error` report (audio thread), tagged with the `open` it belongs to."""
    opened: int
    event: m.AudioFailed


class AudioEdges:
    def __init__(self, mic, downlink, uplink_factory: Callable[[int], object], post: Callable[[object], None],
                 metrics, clock: Callable[[], float]) -> None:
        self._mic, self._downlink, self._uplink_factory = mic, downlink, uplink_factory
        self._post, self._metrics, self._clock = post, metrics, clock
        self.path: SendPath | None = None   # the audio is open exactly while there is a send path
        self._opens = 0
        self._speaker_open = False

    def open(self, speaker: bool) -> list:
        """Open the mic (and the speaker); returns the gate's events of the opening (it opens at once)."""
        self._opens += 1
        self._speaker_open = speaker
        path = self.path = SendPath(self._post, self._metrics, self._clock)
        self._mic.open(path.on_frames, self._on_error("mic"))
        if speaker:
            self._downlink.open(lambda: self._post(m.PlaybackDrained(self._clock())), self._on_error("speaker"))
        return path.begin(self._uplink_factory(self._mic.sample_rate_hz))

    @property
    def speaker_open(self) -> bool:
        """A conversation's speaker is open now (the earcon player queues on it)."""
        return self.path is not None and self._speaker_open

    def is_current(self, stopped: AudioStopped) -> bool:
        return stopped.opened == self._opens and self.path is not None

    def check(self) -> None:
        _each([device.check_stream for device in self._open_devices()], "checking an audio stream")

    def close(self) -> bool:
        """Close what is open; False if nothing was."""
        if self.path is None:
            return False
        self.path = None
        _each([device.close for device in self._open_devices()], "closing an audio device")
        return True

    def _open_devices(self) -> tuple:
        return (self._mic, self._downlink) if self._speaker_open else (self._mic,)

    def _on_error(self, device: str) -> Callable[[str], None]:
        opened = self._opens
        return lambda reason: self._post(AudioStopped(opened, m.AudioFailed(f"{device} stopped: {reason}",
                                                                             stopped=True, device=device)))


def _each(calls, doing: str) -> None:
    """Run every call; one that fails is logged and the others still run."""
    for call in calls:
        try:
            call()
        except Exception:
            log.exception("error while %s", doing)
