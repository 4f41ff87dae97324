"""A Controller driven the way the runtime drives it, with a clock the test moves.

Actions are executed in order, right after the `handle` call that returned them (as the runtime
does): sends go to the connection, mic chunks (`mic_chunks`) take the real send path
(audio/sendpath.py) along the routes the controller sets, `Play` payloads are decoded like the speaker path decodes them
(so audio the speaker could not take fails the test), `StopPlayback` answers with
`PlaybackStopped` at once. Connection events (from the scripted peer on this thread, or a real
connection's reader thread) queue up and are handled in order by `pump()`, which runs at once
when the scripted peer delivers on the test's thread outside a `handle`; events of a connection
already dropped are ignored, as the runtime's generation check does.
"""

from __future__ import annotations

import queue
from collections import Counter
import threading

from pivoice import messages as m
from pivoice.audio import codec
from pivoice.audio.sendpath import SendPath
from pivoice.controller import IDLE, Controller, Settings
from pivoice.metrics import Metrics
from pivoice.realtime.scripted import ScriptedConnector
from support.runtime_fakes import Key

SESSION = {"type": "realtime", "model": "gpt-realtime"}
SETTINGS = Settings(session=SESSION, output_format="audio/pcm", manual_turns=False, interrupt_response=True,
                    half_duplex=True, idle_timeout_s=10, max_duration_s=600, connect_timeout_s=5,
                    reply_stall_s=10)
PCM_100MS = b"\x01\x00" * 2400   # 100 ms of 24 kHz s16le


class ChunkUplink:
    """An uplink whose "frames" already are wire chunks of 20 ms: the DSP is not under test here."""

    def open_now(self) -> list:
        return []

    def process_frames(self, frames: list[bytes]) -> list:
        return [m.Chunk(frame, 20) for frame in frames]


class Rig:
    """Test thread only (a real connection's reader thread only puts on `inbox`)."""

    def __init__(self, settings: Settings = SETTINGS, connector=None):
        self.ctrl = Controller(settings)
        self.fmt = settings.output_format
        self.peer = connector if connector is not None else ScriptedConnector(clock=lambda: self.now_s)
        self.inbox: queue.Queue = queue.Queue()
        self.now_s = 0.0
        self.conn = None
        self.generation = 0
        self.actions: list = []
        self.notes: list[m.Note] = []
        self.played = bytearray()
        self.played_ms_on_stop = 0
        self.handled: Counter = Counter()   # connection events handled, by type name
        self._owner = threading.get_ident()
        self._busy = False
        self.path: SendPath | None = None

    # ---- driving ----

    def handle(self, event: object, at_s: float | None = None) -> list:
        """Handle one event (at `at_s`, default now), execute its actions, then pump the inbox."""
        if at_s is not None:
            self.now_s = at_s
        self._busy = True
        try:
            actions = self.ctrl.handle(event, self.now_s)
            for action in actions:
                self._execute(action)
        finally:
            self._busy = False
        self.pump()
        return actions

    def pump(self, wait_s: float = 0.0) -> int:
        """Handle queued connection events; with `wait_s`, block up to that long for the first one."""
        handled = 0
        while True:
            try:
                generation, event = self.inbox.get(timeout=wait_s) if wait_s and not handled else \
                    self.inbox.get_nowait()
            except queue.Empty:
                return handled
            handled += 1
            if generation == self.generation:
                self.handled[type(event).__name__] += 1
                self._busy = True
                try:
                    for action in self.ctrl.handle(event, self.now_s):
                        self._execute(action)
                finally:
                    self._busy = False

    def mic_chunks(self, *chunks: bytes) -> None:
        """Chunks from the mic thread (run on this thread): sent, kept or dropped as routed."""
        if self.path is not None:
            self.path.on_frames(list(chunks))

    def start(self, at_s: float = 0.0) -> None:
        """Press and get a key: the scripted peer opens and greets at once."""
        self.handle(m.Press(), at_s)
        self.handle(m.TokenReady(Key()), at_s + 0.01)

    def tick_until(self, until_s: float, step_s: float = 0.1) -> None:
        while self.now_s + step_s <= until_s + 1e-9 and self.ctrl.phase != IDLE:
            self.handle(m.Tick(), self.now_s + step_s)

    # ---- reading ----

    @property
    def phase(self) -> str:
        return self.ctrl.phase

    def last_end(self) -> m.Note | None:
        ends = [n for n in self.notes if n.kind == "ended"]
        return ends[-1] if ends else None

    def kinds(self) -> list[str]:
        return [n.kind for n in self.notes]

    # ---- the runtime's side ----

    def _deliver(self, generation: int, event: object) -> None:
        self.inbox.put((generation, event))
        if not self._busy and threading.get_ident() == self._owner:
            self.pump()   # the scripted peer played it on the test's thread: handle it now

    def _execute(self, action: object) -> None:
        self.actions.append(action)
        if isinstance(action, m.Note):
            self.notes.append(action)
        elif isinstance(action, m.OpenAudio):
            self.path = SendPath(lambda ev: self.inbox.put((self.generation, ev)), Metrics(), lambda: self.now_s)
            self.path.begin(ChunkUplink())
        elif isinstance(action, m.CloseAudio):
            self.path = None
        elif isinstance(action, m.RouteMic):
            if self.path is not None:
                self.path.route(action.route)
        elif isinstance(action, m.Connect):
            self.generation += 1
            generation = self.generation
            self.conn = self.peer.connect(action.key.value.reveal(), lambda ev: self._deliver(generation, ev))
            if self.path is not None:
                self.path.attach(self.conn)
        elif isinstance(action, m.Disconnect):
            self.generation += 1
            if self.path is not None:
                self.path.attach(None)
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        elif isinstance(action, m.Send):
            if self.conn is not None:
                self.conn.send(action.event)
        elif isinstance(action, m.Play):
            self.played += codec.decode(self.fmt, action.payload)
        elif isinstance(action, m.StopPlayback):
            for follow in self.ctrl.handle(m.PlaybackStopped(self.played_ms_on_stop), self.now_s):
                self._execute(follow)
