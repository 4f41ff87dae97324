"""The built daemon's lifecycle: start and stop its halves in order (no construction here: app.py builds).

Started in two halves so a reload can swap daemons (reload.py): the core (token provider,
controller thread) and the edges (control socket, button), which post through the service's
switchboard. Main thread only.
"""

from __future__ import annotations

import logging

from pivoice import messages as m
from pivoice.config import Config
from pivoice.device_commands import DeviceCommands, control_commands


class Daemon:
    """Everything `pivoice run` starts, wired together. Built, started and stopped on the main thread."""

    def __init__(self, cfg: Config, *, runtime, tokens, button_factory, control_factory, prepare=None,
                 pin_factory=None, test_hooks: bool = False, assistant=None, volume=None, status_fanout=None,
                 mqtt_factory=None, light_factory=None, heartbeat=None):
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
        self.volume = volume                  # ctl volume and MQTT set it (device_commands.py)
        self._status_fanout = status_fanout   # watchers.StatusFanout the runtime tells of each change
        self._mqtt_factory = mqtt_factory     # (commands=, get_status=) -> mqtt.client.MqttEdge; None: off
        self.mqtt = None
        self._light_factory = light_factory   # () -> status_light.StatusLight, an edge like the button; None: off
        self.light = None
        self.heartbeat = heartbeat            # heartbeat.Heartbeat (fleet status to the backend); None: off

    def start_core(self) -> None:
        logging.getLogger().setLevel(self.cfg.log_level.upper())
        if self._prepare is not None:
            self._prepare()
        self.tokens.start()
        self.runtime.start()
        if self.heartbeat is not None:   # core, not edge: it reports this runtime's figures
            if self._status_fanout is not None:
                self._status_fanout.add(self.heartbeat.on_status)
            self.heartbeat.start()

    def start_edges(self, post, get_status) -> None:
        commands = DeviceCommands(post, self.volume)
        extra, valued = control_commands(commands)
        if self._test_hooks:
            extra["debug-freeze"] = self.runtime.debug_freeze
        self.control = self._control_factory(
            on_press=lambda: post(m.Press("ctl")), on_release=lambda: post(m.Release("ctl")),
            get_status=get_status, extra_commands=extra, value_commands=valued)
        self.control.start()
        self.button = self._button_factory(post)   # button.Buttons: both buttons, posting their events
        if self._light_factory is not None and self._status_fanout is not None:
            self.light = self._light_factory()
            self._status_fanout.add(self.light)
            self.light(self._status_fanout.last or self.runtime.status())
        if self._mqtt_factory is not None:
            self.mqtt = self._mqtt_factory(commands=commands, get_status=get_status)
            commands.add_volume_listener(self.mqtt.refresh)
            if self._status_fanout is not None:
                self._status_fanout.add(self.mqtt.on_status)
            self.mqtt.start()

    def stop_edges(self) -> None:
        button, self.button = self.button, None
        control, self.control = self.control, None
        light, self.light = self.light, None
        if light is not None:
            self._status_fanout.remove(light)
            light.close()
        mqtt, self.mqtt = self.mqtt, None
        if mqtt is not None:
            if self._status_fanout is not None:
                self._status_fanout.remove(mqtt.on_status)
            mqtt.close()   # publishes offline: a reload shows the device unavailable for its second
        if button is not None:
            button.close()
        if control is not None:
            control.close()
        self.discard()

    def stop_core(self) -> None:
        if self.heartbeat is not None:
            if self._status_fanout is not None:
                self._status_fanout.remove(self.heartbeat.on_status)
            self.heartbeat.stop()
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
