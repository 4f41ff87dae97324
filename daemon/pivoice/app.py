"""Composition root: `pivoice run --config FILE`.

The only module that names concrete classes: it reads the config, builds every
edge (mic, speaker, button, control socket, token client, Realtime connector),
hands them to the runtime through constructors, and runs until SIGTERM/SIGINT
(SIGHUP reloads the config: see reload.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time

from pivoice import messages as m
from pivoice.config import WAV_PREFIX, Config, load_or_report
from pivoice.config import load as load_config
from pivoice.controller import Controller, Settings
from pivoice.lifecycle import Daemon
from pivoice.reload import Service, block_signals
from pivoice.sdnotify import Notifier, SystemdNotifier, watchdog_interval_s

log = logging.getLogger(__name__)
TEST_HOOKS_ENV = "PIVOICE_TEST_HOOKS"


def controller_settings(cfg: Config, tool_declarations: list | None = None) -> Settings:
    td = cfg.session.turn_detection
    session = cfg.session.payload()
    if tool_declarations:   # the local tools go out with session.update (the key is minted without them)
        session["tools"] = list(session.get("tools") or []) + tool_declarations
    return Settings(
        session=session,
        output_format=cfg.session.output_format,
        manual_turns=td is None,
        interrupt_response=bool(td and td.interrupt_response),
        half_duplex=cfg.conversation.half_duplex,
        idle_timeout_s=cfg.conversation.idle_timeout_s,
        max_duration_s=cfg.conversation.max_duration_s,
        connect_timeout_s=cfg.realtime.connect_timeout_s,
        reply_stall_s=cfg.realtime.reply_stall_s,
        dictation=session["type"] == "transcription",
        mcp=cfg.mcp,
        speaker=cfg.session.output_audio,
    )


def build_mic(cfg: Config, portaudio):
    from pivoice.audio.capture import PyAudioMic, WavMic
    inp = cfg.audio.input
    if inp.device.startswith(WAV_PREFIX):
        return WavMic(inp.device[len(WAV_PREFIX):], frame_ms=inp.frame_ms, block_ms=inp.block_ms)
    return PyAudioMic(inp.device, inp.sample_rate_hz, inp.frame_ms, block_ms=inp.block_ms, portaudio=portaudio)


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
    from pivoice.tokens import SecretFile, TokenProvider
    t = cfg.tokens
    try:
        secret = SecretFile(t.secret_file)   # re-read after a 401: a rotated secret needs no restart
    except ValueError as exc:
        raise ValueError(f"{cfg.file}: tokens.secret_file: {exc}") from None
    try:
        return TokenProvider(
            t.backend_url, t.device_id, secret, cfg.session.payload(), timeout_s=t.timeout_s,
            refresh_margin_s=t.refresh_margin_s, ca_bundle=t.ca_bundle, allow_insecure_http=t.allow_insecure_http)
    except ValueError as exc:   # the URL rules (https off loopback) and the CA bundle file
        raise ValueError(f"{cfg.file}: tokens: {exc}") from None


def build_assistant(cfg: Config, events, volume):
    """The local tools (runner, timers) and the transcript sink; tool results and timers that run
    out are posted on `events`, the controller's queue. Returns (assistant, function declarations)."""
    from pivoice.assistant import Assistant
    from pivoice.transcripts import TranscriptSink
    t = cfg.transcripts
    sink = TranscriptSink(t.jsonl_path, t.webhook_url, webhook_timeout_s=t.webhook_timeout_s,
                          webhook_bearer_token_file=t.webhook_bearer_token_file) if t is not None else None
    if not cfg.tools.enabled:
        return Assistant(sink=sink), []
    from pivoice.tools.registry import build_registry
    from pivoice.tools.runner import ToolRunner
    from pivoice.tools.timers import TimerService
    timers = None
    if cfg.tools.builtin.timers:
        timers = TimerService(lambda t: events.put(m.TimerFired(t.id, t.label, t.duration_s)),
                              max_timers=cfg.tools.builtin.max_timers)
    registry = build_registry(cfg.tools, volume=volume, timers=timers)
    runner = ToolRunner(registry, lambda r: events.put(m.ToolDone(r.call_id, r.name, r.output, r.ok, r.effect)))
    return Assistant(runner=runner, sink=sink, timers=timers), registry.declarations()


def session_to_send(cfg: Config) -> dict:
    """The session of `session.update`, local tool declarations included (for check-config: builds the
    tool registry with throwaway collaborators; nothing starts)."""
    if not cfg.tools.enabled:
        return controller_settings(cfg).session
    from pivoice.audio.volume import Volume
    from pivoice.tools.registry import build_registry
    from pivoice.tools.timers import TimerService
    registry = build_registry(cfg.tools, volume=Volume(), timers=TimerService(lambda timer: None))
    return controller_settings(cfg, registry.declarations()).session


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


def build(cfg: Config, *, on_note=None, notifier: Notifier | None = None, watchdog_interval_s: float | None = None,
          test_hooks: bool = False) -> Daemon:
    from pivoice.audio.devices import PortAudioHost
    from pivoice.audio.downlink import Downlink
    from pivoice.audio.volume import Volume
    from pivoice.button import ButtonError, GpioButton, make_pin_factory
    from pivoice.control import ControlServer
    from pivoice.realtime.session import RealtimeConnector
    from pivoice.runtime import Runtime

    b = cfg.button
    try:
        factory = make_pin_factory(b.pin_factory)
    except ButtonError as exc:
        raise ValueError(f"{cfg.file}: {exc}") from None
    tokens = build_tokens(cfg)
    portaudio = PortAudioHost()   # initialised on first use, so WAV-only setups never load PortAudio
    events: queue.Queue = queue.Queue()
    volume = Volume(cfg.audio.output.volume)
    assistant, declarations = build_assistant(cfg, events, volume)
    runtime = Runtime(
        Controller(controller_settings(cfg, declarations)),
        mic=build_mic(cfg, portaudio),
        uplink_factory=build_uplink_factory(cfg),
        downlink=Downlink(build_speaker(cfg, portaudio), cfg.session.output_format, volume=volume),
        tokens=tokens,
        connector=RealtimeConnector(cfg.realtime.url, cfg.session.payload().get("model"),
                                    connect_timeout_s=cfg.realtime.connect_timeout_s),
        on_note=on_note, notifier=notifier, watchdog_interval_s=watchdog_interval_s,
        assistant=assistant, events=events,
    )

    def button_factory(on_press, on_release):
        return GpioButton(b.pin, pull_up=b.pull_up, bounce_time_s=b.bounce_time_s, pin_factory=factory,
                          on_press=on_press, on_release=on_release)

    def control_factory(**handlers):
        return ControlServer(cfg.control.socket_path, **handlers)

    return Daemon(cfg, runtime=runtime, tokens=tokens, button_factory=button_factory,
                  control_factory=control_factory, prepare=lambda: check_audio_devices(cfg, portaudio),
                  pin_factory=factory, test_hooks=test_hooks, assistant=assistant)


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
    block_signals()   # before any thread exists: SIGHUP during start-up must not kill us either
    # formatted before the config loads: loading may warn (e.g. beta session keys mapped to GA)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    logging.getLogger().setLevel(cfg.log_level.upper())
    test_hooks = os.environ.get(TEST_HOOKS_ENV) == "1"
    if test_hooks:
        log.warning("%s=1: test hooks are on (ctl debug-freeze hangs the controller); never in production",
                    TEST_HOOKS_ENV)
    notifier = SystemdNotifier.from_env()
    watchdog_s = watchdog_interval_s()
    if watchdog_s is not None:
        log.info("systemd watchdog: the controller thread pings every %.1f s", watchdog_s)
    timeline = open(args.timeline, "a", buffering=1) if args.timeline else None
    on_note = _timeline_printer(timeline) if timeline else None

    def rebuild(new_cfg: Config) -> Daemon:
        return build(new_cfg, on_note=on_note, notifier=notifier, watchdog_interval_s=watchdog_s,
                     test_hooks=test_hooks)

    def reread() -> Daemon:   # SIGHUP: the same file again, and the secret it names
        return rebuild(load_config(args.config))

    daemon = None
    try:
        daemon = rebuild(cfg)
        service = Service(daemon, load=reread, rebuild=rebuild, notifier=notifier)
        service.start()
    except Exception as exc:   # start-up errors (device, button, secret file) are user errors: say which
        log.error("cannot start: %s", exc)
        if daemon is not None:
            daemon.stop()   # no control socket left behind
        return 1
    notifier.notify("READY=1\nSTATUS=running")
    log.info("pivoice ready (config %s)", cfg.file)
    try:
        return service.run()
    finally:
        if timeline:
            timeline.close()
