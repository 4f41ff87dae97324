"""The controller thread: one queue in, the controller's actions executed out.

Edge threads (audio, gpiozero, WebSocket reader, token refresh, control socket) only put events
on `events`; this thread feeds them to the controller, the only owner of state, and executes its
actions. Audio mostly bypasses it: the mic thread sends (audio/sendpath.py) and the socket's
reader plays reply deltas (audio/playpath.py) along the routes the controller sets, so this thread
sleeps through a stream. Under systemd's watchdog it sends WATCHDOG=1, so a controller stuck in a
handler stops the pings and systemd restarts the daemon.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

from pivoice import errors
from pivoice import messages as m
from pivoice.assistant import Assistant
from pivoice.audio_edges import AudioEdges, AudioStopped
from pivoice.audio.playpath import PlayPath
from pivoice.controller import IDLE, Controller
from pivoice.earcons import EarconPlayer
from pivoice.metrics import Metrics, input_format_of
from pivoice.osthread import name_this_thread
from pivoice.reload import RetireRequest
from pivoice.sdnotify import Notifier
from pivoice.watchers import is_news

log = logging.getLogger(__name__)
TICK_S = 0.1
# A due tick rides on the next event; it wakes the thread on its own only after this much more.
TICK_GRACE_S = 0.3


@dataclass(frozen=True)
class _FromConnection:
    generation: int
    event: object


class _Freeze:
    """Test hook (`ctl debug-freeze`): block as a hung handler would, so the watchdog restarts us."""


class Runtime:
    """Runs the controller thread. `status()` may be called from any thread."""

    def __init__(self, controller: Controller, *, mic, uplink_factory: Callable[[int], object], downlink,
                 tokens, connector, on_note: Callable[[m.Note], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, notifier: Notifier | None = None,
                 watchdog_interval_s: float | None = None, assistant: Assistant | None = None,
                 events: queue.Queue | None = None, on_status: Callable[[dict], None] | None = None,
                 earcon_clips: dict[str, bytes] | None = None):
        self.controller = controller
        self._notifier = notifier
        self._watchdog_interval_s = watchdog_interval_s if notifier is not None else None
        self.events: queue.Queue = events or queue.Queue()   # given: the tool runner and timers post here too
        self._mic = mic
        self._downlink = downlink
        self._play = PlayPath(downlink, controller.s.output_format, clock)
        self._tokens = tokens
        self._connector = connector
        self._on_note = on_note
        self._clock = clock
        self._conn = None
        self._generations = itertools.count(1)
        self._generation = 0
        self._thread = threading.Thread(target=self._run, name="controller", daemon=True)
        self._stopped = threading.Event()
        self._thaw = threading.Event()   # only stop() sets it: ends a debug freeze
        self.metrics = Metrics(input_format_of(controller.s.session), controller.s.output_format)
        self._audio = AudioEdges(mic, downlink, uplink_factory, self.events.put, self.metrics, clock)
        self._status: dict = controller.snapshot()
        self._on_status = on_status   # the status light, MQTT, the fleet heartbeat (watchers.py)
        self._assistant = assistant or Assistant()   # tools and transcripts (assistant.py)
        # earcons: the sounds by cue, in wire format (earcons.wire_clips); played beside the reply path
        self._earcons = EarconPlayer(earcon_clips or {}, controller.s.output_format, downlink, self._play.lock,
                                     self.post)
        self._reply_begun_s: float | None = None
        self._assistant.bind(self.post)

    # ---- any thread ----------------------------------------------------------------

    def post(self, event: object) -> None:
        self.events.put(event)

    def status(self) -> dict:
        token_status = self._tokens.status() if self._tokens else {}
        audio = {"mic": self._mic.stats(), "speaker": self._downlink.stats()}   # xruns, stream errors
        return {**self._status, "token": token_status, "metrics": self.metrics.as_dict(), "audio": audio,
                **self._assistant.status(), **self.metrics.figures.as_dict(self._clock())}   # usage, ends

    @property
    def idle(self) -> bool:
        """No conversation in progress, as last published by the controller thread."""
        return self._status["state"] == IDLE

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._thaw.set()
        self.post(m.Shutdown())
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def retire(self, timeout_s: float = 2.0) -> bool:
        """Stop the controller thread if it is idle once it reaches this request (a press queued
        before it is handled first, and then the answer is no). True if it stopped."""
        request = RetireRequest()
        self.post(request)
        request.done.wait(timeout_s)
        request.answer(False)   # gave up waiting: a late answer from the controller no longer counts
        if request.retired and self._thread.is_alive():
            self._thread.join(timeout_s)
        return bool(request.retired)

    def debug_freeze(self) -> None:
        self.post(_Freeze())

    # ---- controller thread ---------------------------------------------------------

    def _run(self) -> None:
        name_this_thread("controller")
        next_tick = self._clock() + TICK_S
        next_ping = self._clock()
        while not self._stopped.is_set():
            now = self._clock()
            if self._watchdog_interval_s is not None and now >= next_ping:
                self._notifier.notify("WATCHDOG=1")
                next_ping = now + self._watchdog_interval_s
            # Idle, no timer can fire: sleep until an event or a watchdog ping. In a conversation a
            # due tick rides on the next event (timers are seconds long; 0.4 s resolution is plenty).
            idle = self.controller.phase == IDLE
            wake_at = None if idle else next_tick + TICK_GRACE_S
            if self._watchdog_interval_s is not None:
                wake_at = next_ping if wake_at is None else min(wake_at, next_ping)
            wake_at = self._earcons.wake_at(wake_at)
            try:
                event = self.events.get(timeout=None if wake_at is None else max(0.0, wake_at - now))
            except queue.Empty:
                self._play_earcon()
                if idle or self._clock() < next_tick + TICK_GRACE_S:
                    continue   # woken only to ping the watchdog
                event = m.Tick()
            if self._earcons.absorbs(event, self._reply_begun_s):
                continue   # the earcon player's own, or an earcon's drain (not the reply's)
            self._count_played(event.at_s if isinstance(event, m.PlaybackDrained) else None)
            if isinstance(event, _Freeze):
                log.warning("debug-freeze: the controller thread blocks now (test hook); watchdog pings stop")
                self._thaw.wait()
                continue
            if isinstance(event, RetireRequest):
                if event.answer(idle) and idle:
                    break
                continue
            if self._clock() >= next_tick:
                next_tick = self._clock() + TICK_S
                if not isinstance(event, m.Tick):
                    self._dispatch(m.Tick())
                    self._after_dispatch()
            try:
                self._route(event)
            except Exception:   # one bad event must not take the daemon down
                log.exception("error while handling %s", type(event).__name__)
            if isinstance(event, m.Shutdown):
                self._stopped.set()
        self._close_audio()
        self._earcons.close_tail()

    def _route(self, event: object) -> None:
        if isinstance(event, _FromConnection):
            if event.generation != self._generation:
                return   # a late event from a connection we already dropped
            event = event.event
        if isinstance(event, AudioStopped):
            if not self._audio.is_current(event):
                return   # reported by a device we have closed since
            event = event.event
        if isinstance(event, m.AudioDelta):
            self.metrics.delta_at_s = event.received_at_s or self._clock()
        self.metrics.figures.heard(event)   # reply audio and usage (response.done) for `ctl status`
        self._dispatch(event)
        self._after_dispatch()

    def _from_connection(self, generation: int, event: object) -> None:
        """The socket's reader thread: a delta of the routed reply is played right there (this
        thread is not woken for it); everything else is queued for the controller."""
        if not (isinstance(event, m.AudioDelta) and generation == self._generation and self._play.offer(event)):
            self.post(_FromConnection(generation, event))

    def _count_played(self, before_s: float | None = None) -> None:
        """The deltas the reader played, for the controller's count; with a PlaybackDrained, only
        those that reached the speaker before it drained come before it."""
        played = self._play.take_played(before_s)
        for event in played:
            self.metrics.figures.heard(event)
            self._dispatch(event)
        if played:
            self._after_dispatch()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, m.Tick) and self._audio.path is not None:
            self._audio.check()   # the streams' watchdog rides on the tick
        earcons = []
        for action in self.controller.handle(event, self._clock()):
            if isinstance(action, m.Earcon):
                earcons.append(action.cue)   # after the event's other actions: the mic route first
            else:
                self._execute(action)
        for cue in earcons:
            self._play_earcon(cue)

    def _after_dispatch(self) -> None:
        before, self._status = self._status, self.controller.snapshot()
        self.metrics.figures.rolled_over(self.controller.rollovers)
        if self._on_status is not None and is_news(before, self._status):
            self._on_status(self.status())
        self.metrics.reached_device(self._downlink.device_first_sample_at)
        self._play_earcon()

    def _execute(self, action: object) -> None:
        if isinstance(action, m.RouteMic):
            flushed_ms = self._audio.path.route(action.route) if self._audio.path is not None else 0.0
            if flushed_ms:
                self._note(m.Note("flushed", f"sent {flushed_ms:.0f} ms captured while connecting"))
        elif isinstance(action, m.RoutePlayback):
            self._play.route(action.response_id)
        elif isinstance(action, m.Play):
            self._play.play(action.payload)
            self.metrics.written_to_speaker(self._downlink.first_sample_at)
        elif isinstance(action, m.Send):
            if self._conn is not None:
                self._conn.send(action.event)
        elif isinstance(action, m.Note):
            self._note(action)
        elif isinstance(action, m.OpenAudio):
            self._open_audio(action.speaker)
        elif isinstance(action, m.CloseAudio):   # the end of a conversation (controller._end)
            self._close_audio()
            self.metrics.figures.ended(*self.controller.last_conversation_end(), self._clock())
        elif isinstance(action, m.RequestToken):
            self._tokens.request(
                lambda key: self.post(m.TokenReady(key)),
                lambda err: self.post(m.TokenFailed(err.code, str(err), errors.retryable(err.code))))
        elif isinstance(action, m.Connect):
            self._generation = next(self._generations)
            generation = self._generation
            self._conn = self._connector.connect(action.key.value.reveal(),
                                                 lambda ev: self._from_connection(generation, ev))
            if self._audio.path is not None:
                self._audio.path.attach(self._conn)
        elif isinstance(action, m.Disconnect):
            self._generation = next(self._generations)
            if self._audio.path is not None:
                self._audio.path.attach(None)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        elif isinstance(action, m.BeginReply):
            self._reply_begun_s = self._clock()
            self._play.begin_reply()
            self.metrics.reply_began()
        elif isinstance(action, m.FinishReply):
            self._play.finish_reply()
        elif isinstance(action, m.StopPlayback):
            self._count_played()   # the route closed before this stop: every delta played is in the count
            self._dispatch(m.PlaybackStopped(self._play.stop()))
        elif not self._assistant.execute(action):
            raise TypeError(f"unknown action {action!r}")

    def _play_earcon(self, cue: str | None = None) -> None:
        """Play (or hold: earcons.py) an earcon; None: a held one, if its time has come."""
        opened = self._audio.path is not None
        for played in self._earcons.offer(cue, self._clock(), appended=self.metrics.press_at_s is None,
                                          audio_open=opened, speaker_open=self._audio.speaker_open):
            self._note(m.Note("earcon", f"earcon: {played}", "debug"))

    def _open_audio(self, speaker: bool) -> None:
        self._earcons.close_tail()   # an ended/error earcon still sounding gives way to the new conversation
        self.metrics.press_at_s = self._clock()
        self.metrics.conversations += 1
        self.metrics.figures.started(time.time(), self._clock())
        try:
            for event in self._audio.open(speaker):
                self._dispatch(event)
        except Exception as exc:   # a USB device unplugged since start-up, a busy ALSA device, ...
            self._dispatch(m.AudioFailed(str(exc)))

    def _close_audio(self) -> None:
        self._earcons.held = None   # the conversation ended before its listening earcon: no beep now
        if self._audio.close():
            self.metrics.press_at_s = None

    def _note(self, note: m.Note) -> None:
        log.log(logging.getLevelName(note.level.upper()), "%s", note.text)
        if self._on_note is not None:
            self._on_note(note)
