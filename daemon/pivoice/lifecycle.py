"""The built daemon's lifecycle: start and stop its halves in order (no construction here: app.py builds).

Started in two halves so a reload can swap daemons (reload.py): the core (token provider,
controller thread) and the edges (control socket, button), which post through the service's
switchboard. Main thread only.
"""

from __future__ import annotations

import logging

from pivoice import messages as m
from pivoice.config import Config


class Daemon:
    """Everything `pivoice run` starts, wired together. Built, started and stopped on the main thread."""

    def __init__(self, cfg: Config, *, runtime, tokens, button_factory, control_factory, prepare=None,
                 pin_factory=None, test_hooks: bool = False, assistant=None):
        self.cfg = cfg
        self.assistant = assistant
        self._prepare = prepare
        self.runtime = runtime
        self.tokens = tokens
        self._button_factory = button_factory
        self._control_factory = control_factory
        self._pin_factory = pin_factory
        self._test_hooks = test_hooks
        self.button = None
        self.control = None

    def start_core(self) -> None:
        logging.getLogger().setLevel(self.cfg.log_level.upper())
        if self._prepare is not None:
            self._prepare()
        self.tokens.start()
        self.runtime.start()

    def start_edges(self, post, get_status) -> None:
        extra = {"debug-freeze": self.runtime.debug_freeze} if self._test_hooks else None
        self.control = self._control_factory(
            on_press=lambda: post(m.Press("ctl")), on_release=lambda: post(m.Release("ctl")),
            get_status=get_status, extra_commands=extra)
        self.control.start()
        self.button = self._button_factory(on_press=lambda: post(m.Press("button")),
                                           on_release=lambda: post(m.Release("button")))

    def stop_edges(self) -> None:
        button, self.button = self.button, None
        control, self.control = self.control, None
        if button is not None:
            button.close()
        if control is not None:
            control.close()
        self.discard()

    def stop_core(self) -> None:
        self.runtime.stop()
        self.tokens.stop()
        if self.assistant is not None:
            self.assistant.close()

    def stop(self) -> None:
        self.stop_edges()
        self.stop_core()

    def discard(self) -> None:
        """Release what building took (the pin factory may hold the GPIO chip open)."""
        factory, self._pin_factory = self._pin_factory, None
        if factory is not None:
            factory.close()
