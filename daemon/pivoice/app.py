"""Composition root: `pivoice run --config FILE`.

The only module that names concrete classes: it reads the config, builds every
edge (mic, speaker, button, control socket, token client, Realtime connector),
hands them to the runtime through constructors, and runs until SIGTERM/SIGINT
(SIGHUP reloads the config: see reload.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys

from pivoice import messages as m
from pivoice.config import WAV_PREFIX, Config, load_or_report
from pivoice.config import load as load_config
from pivoice.controller import Controller, Settings
from pivoice.earcons import controller_cues, wire_clips
from pivoice.controller_rollover import warn_without_transcription
from pivoice.lifecycle import Daemon
from pivoice.narration import timeline_writer
from pivoice.reload import Service, block_signals
from pivoice.sdnotify import Notifier, SystemdNotifier, watchdog_interval_s
from pivoice.watchers import StatusFanout

log = logging.getLogger(__name__)
TEST_HOOKS_ENV = "PIVOICE_TEST_HOOKS"


def controller_settings(cfg: Config, tool_declarations: list | None = None,
                        earcon_clips: dict[str, bytes] | None = None) -> Settings:
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
        button_mode=cfg.button.mode,
        cues=controller_cues(cfg.feedback, earcon_clips if earcon_clips is not None
                             else wire_clips(cfg.feedback, cfg.session.output_format)),
        rollover=cfg.conversation.rollover,
        carry_turns=cfg.conversation.carry_turns,
        max_conversation_s=cfg.conversation.max_conversation_s,
    )


def build_mic(cfg: Config, portaudio):
    from pivoice.audio.capture import PyAudioMic, WavMic
    inp = cfg.audio.input
    if inp.device.startswith(WAV_PREFIX):
        return WavMic(inp.device[len(WAV_PREFIX):], frame_ms=inp.frame_ms, block_ms=inp.block_ms)
    return PyAudioMic(inp.device, inp.sample_rate_hz, inp.frame_ms, block_ms=inp.block_ms, period_ms=inp.period_ms,
                      portaudio=portaudio)


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


def build_heartbeat(cfg: Config, get_status):
    """The fleet heartbeat (heartbeat.py), or None when `tokens.status_interval_s` is null."""
    t = cfg.tokens
    if t.status_interval_s is None:
        return None
    from pivoice.heartbeat import Heartbeat
    from pivoice.tokens import SecretFile
    from pivoice.tokens.transport import UrllibTransport
    try:   # its own reader of the secret file and its own transport: used on the heartbeat thread only
        return Heartbeat(t.backend_url, t.device_id, SecretFile(t.secret_file), get_status,
                         interval_s=t.status_interval_s, transport=UrllibTransport(t.ca_bundle),
                         timeout_s=t.timeout_s, allow_insecure_http=t.allow_insecure_http)
    except ValueError as exc:
        raise ValueError(f"{cfg.file}: tokens: {exc}") from None


def build_assistant(cfg: Config, events, volume):
    """The local tools (runner, timers) and the transcript sink; tool results and timers that run
    out are posted on `events`, the controller's queue. Returns (assistant, function declarations)."""
    from pivoice.assistant import Assistant
    from pivoice.transcripts import TranscriptSink
    t = cfg.transcripts
    sink = TranscriptSink(t.jsonl_path, t.webhook_url, webhook_timeout_s=t.webhook_timeout_s,
                          webhook_bearer_token_file=t.webhook_bearer_token_file) if t is not None else None
    if sink is None and cfg.mqtt is not None:   # MQTT's last-transcript sensors read the recent texts
        sink = TranscriptSink(None, None)
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


def build_mqtt_factory(cfg: Config):
    """The MQTT edge's factory, or None when `mqtt:` is off (paho is imported only here)."""
    if cfg.mqtt is None:
        return None
    from pivoice import __version__
    from pivoice.mqtt.client import MqttEdge
    from pivoice.mqtt.transport import make_paho_client
    try:
        make_paho_client(cfg.mqtt)   # the TLS files now, so a bad one stops start-up (and a reload) naming its key
        cfg.mqtt.password()
    except ValueError as exc:
        raise ValueError(f"{cfg.file}: {exc}") from None

    def make(commands, get_status):
        return MqttEdge(cfg.mqtt, commands=commands, get_status=get_status, version=__version__)
    return make


def build_light_factory(cfg: Config, pin_factory, on_note=None):
    """The status light, built when the edges start (the pins are free by then after a reload);
    None without one (`feedback.light.kind: none`). With `--timeline` each change is a `light` line."""
    from pivoice.status_light import StatusLight, build_driver
    if cfg.feedback.light.kind == "none":
        return None

    def report(state: str) -> None:
        on_note(m.Note("light", f"light: {state}", "debug"))

    def make():
        try:
            driver = build_driver(cfg.feedback.light, pin_factory)
        except ValueError as exc:
            raise ValueError(f"{cfg.file}: {exc}") from None
        return StatusLight(driver, on_change=report if on_note is not None else None)
    return make


def build(cfg: Config, *, on_note=None, notifier: Notifier | None = None, watchdog_interval_s: float | None = None,
          test_hooks: bool = False) -> Daemon:
    from pivoice.audio.host import PortAudioHost, warm_up
    from pivoice.audio.downlink import Downlink
    from pivoice.audio.volume import Volume
    from pivoice.button import ButtonError, Buttons, make_pin_factory
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
    warn_without_transcription(cfg.session.payload(), cfg.conversation.rollover, cfg.conversation.carry_turns)
    mqtt_factory = build_mqtt_factory(cfg)
    clips = wire_clips(cfg.feedback, cfg.session.output_format)   # the earcons, converted once
    status_fanout = StatusFanout()   # the one fan-out every status watcher joins (watchers.py)
    runtime = Runtime(
        Controller(controller_settings(cfg, declarations, clips)),
        mic=build_mic(cfg, portaudio),
        uplink_factory=build_uplink_factory(cfg),
        downlink=Downlink(build_speaker(cfg, portaudio), cfg.session.output_format, volume=volume),
        tokens=tokens,
        connector=RealtimeConnector(cfg.realtime.url, cfg.session.payload().get("model"),
                                    connect_timeout_s=cfg.realtime.connect_timeout_s),
        on_note=on_note, notifier=notifier, watchdog_interval_s=watchdog_interval_s,
        assistant=assistant, events=events, on_status=status_fanout,
        earcon_clips=clips,
    )

    def button_factory(post):
        return Buttons(b, post=post, pin_factory=factory, volume=volume)

    def control_factory(**handlers):
        return ControlServer(cfg.control.socket_path, **handlers)

    return Daemon(cfg, runtime=runtime, tokens=tokens, button_factory=button_factory,
                  control_factory=control_factory, prepare=lambda: warm_up(portaudio, cfg.audio.input.device, cfg.audio.output.device, WAV_PREFIX),
                  pin_factory=factory, test_hooks=test_hooks, assistant=assistant, volume=volume,
                  status_fanout=status_fanout, mqtt_factory=mqtt_factory,
                  light_factory=build_light_factory(cfg, factory, on_note),
                  heartbeat=build_heartbeat(cfg, runtime.status))


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
    on_note = timeline_writer(timeline) if timeline else None

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
