"""Composition root: `pivoice run --config FILE`.

The only module that names concrete classes: it reads the config, builds every
edge (mic, speaker, button, control socket, token client, Realtime connector),
hands them to the runtime through constructors, and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from pivoice import messages as m
from pivoice.config import WAV_PREFIX, Config, load_or_report
from pivoice.controller import Controller, Settings

log = logging.getLogger(__name__)


def controller_settings(cfg: Config) -> Settings:
    td = cfg.session.turn_detection
    return Settings(
        session=cfg.session.payload(),
        output_format=cfg.session.output_format,
        manual_turns=td is None,
        interrupt_response=bool(td and td.interrupt_response),
        half_duplex=cfg.conversation.half_duplex,
        idle_timeout_s=cfg.conversation.idle_timeout_s,
        max_duration_s=cfg.conversation.max_duration_s,
        connect_timeout_s=cfg.realtime.connect_timeout_s,
    )


def build_mic(cfg: Config, portaudio):
    from pivoice.audio.capture import PyAudioMic, WavMic
    inp = cfg.audio.input
    if inp.device.startswith(WAV_PREFIX):
        return WavMic(inp.device[len(WAV_PREFIX):], frame_ms=inp.frame_ms)
    return PyAudioMic(inp.device, inp.sample_rate_hz, inp.frame_ms, portaudio=portaudio)


def build_speaker(cfg: Config, portaudio):
    from pivoice.audio.playback import PyAudioSpeaker, WavSpeaker
    out = cfg.audio.output
    if out.device.startswith(WAV_PREFIX):
        return WavSpeaker(out.device[len(WAV_PREFIX):])
    return PyAudioSpeaker(out.device, out.sample_rate_hz, prime_ms=out.prime_ms, buffer_ms=out.buffer_ms,
                          portaudio=portaudio)


def build_uplink_factory(cfg: Config):
    from pivoice.audio.uplink import Uplink
    from pivoice.audio.vad_gate import VadGate
    gate_cfg, frame_ms = cfg.audio.gate, cfg.audio.input.frame_ms
    td = cfg.session.turn_detection
    # The pre-roll must hold at least what the server keeps before speech (prefix_padding_ms).
    preroll_ms = max(gate_cfg.preroll_ms, td.prefix_padding_ms if td else 0)

    def make(mic_rate_hz: int) -> Uplink:
        gate = VadGate(mic_rate_hz, frame_ms, aggressiveness=gate_cfg.aggressiveness, preroll_ms=preroll_ms,
                       trailing_ms=cfg.trailing_ms, start_ms=gate_cfg.start_ms)
        return Uplink(mic_rate_hz, frame_ms, gate, cfg.session.input_format, chunk_ms=cfg.audio.chunk_ms)
    return make


def build_tokens(cfg: Config):
    from pivoice.tokens import TokenProvider, read_secret_file
    t = cfg.tokens
    try:
        secret = read_secret_file(t.secret_file)
    except ValueError as exc:
        raise ValueError(f"{cfg.file}: tokens.secret_file: {exc}") from None
    try:
        return TokenProvider(
            t.backend_url, t.device_id, secret, cfg.session.payload(), timeout_s=t.timeout_s,
            refresh_margin_s=t.refresh_margin_s, ca_bundle=t.ca_bundle, allow_insecure_http=t.allow_insecure_http)
    except ValueError as exc:   # the URL rules (https off loopback) and the CA bundle file
        raise ValueError(f"{cfg.file}: tokens: {exc}") from None


def check_audio_devices(cfg: Config, portaudio) -> None:
    """Initialise PortAudio now (80 ms the first press would otherwise pay) and report a missing
    device at start-up. Not fatal: a USB device may be plugged in later, and each press says it again."""
    from pivoice.audio.devices import INPUT, OUTPUT
    from pivoice.audio.ports import AudioDeviceError
    for key, direction, device in (("input", INPUT, cfg.audio.input.device),
                                   ("output", OUTPUT, cfg.audio.output.device)):
        if device.startswith(WAV_PREFIX):
            continue
        try:
            portaudio.find(device, direction)
        except AudioDeviceError as exc:
            log.error("audio.%s.device: %s", key, exc)


class Daemon:
    """Everything `pivoice run` starts, wired together. Built and stopped on the main thread."""

    def __init__(self, cfg: Config, *, runtime, tokens, button_factory, control_factory, prepare=None):
        self.cfg = cfg
        self._prepare = prepare
        self.runtime = runtime
        self.tokens = tokens
        self._button_factory = button_factory
        self._control_factory = control_factory
        self.button = None
        self.control = None

    def start(self) -> None:
        post = self.runtime.post
        if self._prepare is not None:
            self._prepare()
        self.tokens.start()
        self.runtime.start()
        self.control = self._control_factory(
            on_press=lambda: post(m.Press("ctl")), on_release=lambda: post(m.Release("ctl")),
            get_status=self.runtime.status)
        self.control.start()
        self.button = self._button_factory(on_press=lambda: post(m.Press("button")),
                                           on_release=lambda: post(m.Release("button")))

    def stop(self) -> None:
        if self.button is not None:
            self.button.close()
        if self.control is not None:
            self.control.close()
        self.runtime.stop()
        self.tokens.stop()


def build(cfg: Config, on_note=None) -> Daemon:
    from pivoice.audio.devices import PortAudioHost
    from pivoice.audio.downlink import Downlink
    from pivoice.button import GpioButton, make_pin_factory
    from pivoice.control import ControlServer
    from pivoice.realtime.session import RealtimeConnector
    from pivoice.runtime import Runtime

    tokens = build_tokens(cfg)
    portaudio = PortAudioHost()   # initialised on first use, so WAV-only setups never load PortAudio
    runtime = Runtime(
        Controller(controller_settings(cfg)),
        mic=build_mic(cfg, portaudio),
        uplink_factory=build_uplink_factory(cfg),
        downlink=Downlink(build_speaker(cfg, portaudio), cfg.session.output_format),
        tokens=tokens,
        connector=RealtimeConnector(cfg.realtime.url, cfg.session.model,
                                    connect_timeout_s=cfg.realtime.connect_timeout_s),
        on_note=on_note,
    )
    b = cfg.button
    factory = make_pin_factory(b.pin_factory)

    def button_factory(on_press, on_release):
        return GpioButton(b.pin, pull_up=b.pull_up, bounce_time_s=b.bounce_time_s, pin_factory=factory,
                          on_press=on_press, on_release=on_release)

    def control_factory(**handlers):
        return ControlServer(cfg.control.socket_path, **handlers)

    return Daemon(cfg, runtime=runtime, tokens=tokens, button_factory=button_factory,
                  control_factory=control_factory, prepare=lambda: check_audio_devices(cfg, portaudio))


def _timeline_printer(stream):
    """`--timeline`: one JSON line per controller note, for the demo and the tests."""
    lock = threading.Lock()

    def on_note(note: m.Note) -> None:
        with lock:
            stream.write(json.dumps({"t": round(time.monotonic(), 4), "kind": note.kind, "text": note.text}) + "\n")
            stream.flush()
    return on_note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pivoice run", description="Run the pivoice voice-assistant daemon.")
    parser.add_argument("--config", required=True, help="YAML config file (see config/pivoice.example.yaml)")
    parser.add_argument("--timeline", help="append one JSON line per conversation event to this file")
    args = parser.parse_args(argv)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    logging.basicConfig(level=cfg.log_level.upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    timeline = open(args.timeline, "a", buffering=1) if args.timeline else None
    try:
        daemon = build(cfg, on_note=_timeline_printer(timeline) if timeline else None)
        daemon.start()
    except Exception as exc:   # start-up errors (device, button, secret file) are user errors: say which
        log.error("cannot start: %s", exc)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    _notify_systemd("READY=1")
    log.info("pivoice ready (config %s)", cfg.file)
    stop.wait()
    _notify_systemd("STOPPING=1")
    daemon.stop()
    if timeline:
        timeline.close()
    return 0


def _notify_systemd(state: str) -> None:
    """Type=notify support without a dependency: one datagram to $NOTIFY_SOCKET."""
    import socket
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), path)
        except OSError as exc:
            log.warning("cannot notify systemd: %s", exc)
