"""Earcons: the generated sounds, the `feedback.earcons` config (WAV checks), the controller's Earcon
actions as a table, and the player's two ways to the speaker (the conversation's, or one opened for it)."""

from __future__ import annotations

import threading
import wave
from dataclasses import replace

import numpy as np
import pytest

from pivoice import chimes, earcons
from pivoice import messages as m
from pivoice.audio import codec
from pivoice.audio.downlink import Downlink
from pivoice.audio.wavfile import WavSpeaker
from pivoice.config import ConfigError
from pivoice.controller import Controller
from pivoice.earcons import Cues, EarconDone, EarconPlayer
from pivoice.feedback_config import CUES, FeedbackConfig, read_feedback
from pivoice.settings import Section
from support.controller_rig import SETTINGS

KEY = object()
ALL = Cues(frozenset(CUES))
PCM_100MS = b"\x01\x00" * 2400


def samples(cue: str, fmt: str = codec.PCM) -> np.ndarray:
    return np.frombuffer(codec.decode(fmt, earcons.generated(cue, fmt)), dtype="<i2").astype(float)


# ---- the sounds -------------------------------------------------------------------------

@pytest.mark.parametrize("cue,max_ms", [("listening", 250), ("thinking", 250), ("ended", 250), ("error", 500)])
def test_each_generated_earcon_is_short_quiet_enough_and_starts_and_ends_softly(cue, max_ms):
    x = samples(cue)
    assert 80 <= len(x) / 24 <= max_ms
    assert 0.15 * 32767 < np.abs(x).max() <= 0.35 * 32767   # audible, with headroom under full scale
    assert np.abs(x[:24]).max() < 0.1 * 32767 and np.abs(x[-24:]).max() < 0.1 * 32767   # no click


def test_the_earcons_are_distinct_from_each_other_and_from_the_timer_chime():
    """Told apart by the shape a listener hears, and by the correlation the PulseAudio test finds them with."""
    clips = {cue: samples(cue) for cue in CUES}
    for a in CUES:
        for b in CUES:
            if a < b:
                assert xcorr_peak(clips[a], clips[b]) < 0.6, (a, b, xcorr_peak(clips[a], clips[b]))
    # listening rises and ended falls: the same two notes the other way round
    listening, ended = clips["listening"], clips["ended"]
    assert _pitch(listening[:1500]) < _pitch(listening[-1500:]) and _pitch(ended[:1500]) > _pitch(ended[-1500:])


def xcorr_peak(a: np.ndarray, b: np.ndarray) -> float:
    n = len(a) + len(b)
    c = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    return float(np.abs(c).max() / (np.linalg.norm(a) * np.linalg.norm(b)))


def _pitch(x: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x, 24000))))


def test_g711_sessions_get_the_earcons_at_8_khz_and_the_timer_cue_is_the_chime():
    assert len(earcons.generated("listening", codec.PCMU)) == len(earcons.generated("listening", codec.PCM)) // 6
    assert earcons.generated("timer", codec.PCM) == chimes.timer_chime(codec.PCM)


# ---- config -----------------------------------------------------------------------------

def feedback(data, file="/etc/pivoice/pivoice.yaml") -> FeedbackConfig:
    return read_feedback(Section(data, file, "feedback"))


def write_wav(path, *, seconds=0.2, rate_hz=16000, channels=1, width=2):
    n = int(seconds * rate_hz)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate_hz)
        w.writeframes(bytes(range(256)) * (n * channels * width // 256) + bytes(n * channels * width % 256))
    return path


def test_earcons_default_on_and_can_all_be_turned_off():
    assert feedback(None).enabled_cues() == frozenset(CUES)
    assert feedback({"earcons": False}).enabled_cues() == frozenset()
    cfg = feedback({"earcons": {"thinking": False, "timer": False}})
    assert cfg.enabled_cues() == {"listening", "ended", "error"}


def test_a_wav_replacement_is_read_at_load_and_converted_to_the_wire_format_once(tmp_path):
    write_wav(tmp_path / "ding.wav", seconds=0.5, rate_hz=16000, channels=2)
    cfg = feedback({"earcons": {"listening": "ding.wav"}}, file=str(tmp_path / "pivoice.yaml"))
    clip = cfg.earcon("listening")
    assert clip.rate_hz == 16000 and len(clip.pcm16) == 2 * 8000   # stereo made mono
    wire = earcons.wire_clips(cfg, codec.PCM)
    assert abs(len(wire["listening"]) - 2 * 12000) <= 4 and wire["ended"] == earcons.generated("ended", codec.PCM)


@pytest.mark.parametrize("make,problem", [
    (lambda p: p, "not found"),
    (lambda p: write_wav(p, width=1), "not 16-bit PCM"),
    (lambda p: write_wav(p, channels=3), "has 3 channels"),
    (lambda p: write_wav(p, seconds=3.5), "at most 3 s"),
    (lambda p: p.write_bytes(b"RIFF....WAVEjunk") and p, "not a WAV file"),
])
def test_a_bad_wav_is_refused_at_load_naming_the_key_and_the_problem(tmp_path, make, problem):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(ConfigError) as err:
        feedback({"earcons": {"error": str(path)}})
    assert err.value.key_path == "feedback.earcons.error" and str(path) in str(err.value)
    assert problem in str(err.value)


@pytest.mark.parametrize("data,key", [
    ({"earcons": {"listening": 3}}, "feedback.earcons.listening"),
    ({"earcons": {"beep": True}}, "feedback.earcons.beep"),
    ({"light": {"kind": "neon"}}, "feedback.light.kind"),
    ({"light": {"kind": "led"}}, "feedback.light.pin"),
    ({"light": {"kind": "rgbled", "pins": {"red": 5, "green": 6}}}, "feedback.light.pins.blue"),
    ({"light": {"kind": "pwmled", "pin": 12, "brightness": 2}}, "feedback.light.brightness"),
])
def test_bad_feedback_keys_name_their_path(data, key):
    with pytest.raises(ConfigError) as err:
        feedback(data)
    assert err.value.key_path == key


# ---- the controller: which Earcon at which event ----------------------------------------

def cues_of(actions) -> list[str]:
    return [a.cue for a in actions if isinstance(a, m.Earcon)]


def active(settings):
    ctrl = Controller(settings)
    for t, ev in [(0.0, m.Press()), (0.01, m.TokenReady(KEY)), (0.02, m.SocketOpened()),
                  (0.03, m.ServerEvent({"type": "session.created"}))]:
        ctrl.handle(ev, t)
    return ctrl


def server(ctrl, t, type_, **fields):
    return ctrl.handle(m.ServerEvent({"type": type_, **fields}), t)


def test_a_press_acknowledges_with_listening_after_the_audio_opens():
    actions = Controller(replace(SETTINGS, cues=ALL)).handle(m.Press(), 0.0)
    names = [type(a).__name__ for a in actions]
    assert cues_of(actions) == ["listening"] and names.index("OpenAudio") < names.index("Earcon")
    assert cues_of(Controller(SETTINGS).handle(m.Press(), 0.0)) == []   # default Settings: only the timer chime


def test_server_vad_thinking_once_per_turn_at_speech_stopped_not_again_at_committed():
    ctrl = active(replace(SETTINGS, cues=ALL))
    assert cues_of(server(ctrl, 1.0, "input_audio_buffer.speech_started")) == []
    assert cues_of(server(ctrl, 2.0, "input_audio_buffer.speech_stopped")) == ["thinking"]
    assert cues_of(server(ctrl, 2.01, "input_audio_buffer.committed")) == []
    assert not ctrl.playing   # an earcon is not a reply: half duplex keeps the mic open
    server(ctrl, 5.0, "input_audio_buffer.speech_started")
    assert cues_of(server(ctrl, 6.0, "input_audio_buffer.committed")) == ["thinking"]   # next turn


def test_manual_turns_thinking_at_our_commit_also_while_still_connecting():
    settings = replace(SETTINGS, cues=ALL, manual_turns=True)
    ctrl = active(settings)
    ctrl.handle(m.SpeechStarted(), 1.0)
    assert cues_of(ctrl.handle(m.SpeechEnded(voiced=True), 2.0)) == ["thinking"]
    assert cues_of(server(ctrl, 2.01, "input_audio_buffer.committed")) == []
    early = Controller(settings)
    early.handle(m.Press(), 0.0)
    early.handle(m.SpeechStarted(), 0.1)
    assert cues_of(early.handle(m.SpeechEnded(voiced=True), 0.5)) == ["thinking"]   # the commit waits, the cue not
    assert cues_of(early.handle(m.SpeechEnded(voiced=False), 0.6)) == []


def test_no_thinking_earcon_over_a_playing_reply():
    ctrl = active(replace(SETTINGS, cues=ALL, half_duplex=False))
    server(ctrl, 1.0, "response.created", response={"id": "r1"})
    ctrl.handle(m.AudioDelta("r1", "i1", 0, PCM_100MS), 1.1)
    assert ctrl.playing and cues_of(server(ctrl, 1.2, "input_audio_buffer.speech_stopped")) == []


@pytest.mark.parametrize("event,cue", [
    (m.Press(), "ended"),                                   # the user's press: normal
    (m.SocketClosed(1011, "internal error"), "error"),       # the server went away
    (m.AudioFailed("speaker unplugged"), "error"),
    (m.Shutdown(), None),                                    # the daemon stopping makes no sound
])
def test_the_end_of_a_conversation_sounds_after_the_audio_closed(event, cue):
    ctrl = active(replace(SETTINGS, cues=ALL))
    actions = ctrl.handle(event, 3.0)
    assert cues_of(actions) == ([cue] if cue else [])
    if cue:
        names = [type(a).__name__ for a in actions]
        assert names.index("CloseAudio") < names.index("Earcon")


def test_no_key_ends_with_the_error_earcon_and_disabled_cues_give_none():
    ctrl = Controller(replace(SETTINGS, cues=ALL))
    ctrl.handle(m.Press(), 0.0)
    assert cues_of(ctrl.handle(m.TokenFailed("unauthorized", "device secret refused", False), 0.1)) == ["error"]
    quiet = Controller(replace(SETTINGS, cues=Cues(frozenset({"timer"}))))
    quiet.handle(m.Press(), 0.0)
    assert cues_of(quiet.handle(m.TokenFailed("unauthorized", "refused", False), 0.1)) == []


def test_the_timer_cue_can_be_turned_off_or_replaced():
    fired = m.TimerFired("t1", None, 300.0)
    plays = [a for a in Controller(SETTINGS).handle(fired, 0.0) if isinstance(a, m.Play)]
    assert [p.payload for p in plays] == [chimes.timer_chime(codec.PCM)]   # today's default
    off = Controller(replace(SETTINGS, cues=Cues(frozenset())))
    assert not [a for a in off.handle(fired, 0.0) if isinstance(a, m.Play)]
    own = Controller(replace(SETTINGS, cues=Cues(frozenset({"timer"}), timer_clip=PCM_100MS)))
    assert [a.payload for a in own.handle(fired, 0.0) if isinstance(a, m.Play)] == [PCM_100MS]


# ---- the player -------------------------------------------------------------------------

class Posted(list):
    def __init__(self):
        super().__init__()
        self.event = threading.Event()

    def __call__(self, item):
        self.append(item)
        self.event.set()


def test_idle_the_player_opens_the_speaker_for_the_earcon_and_closes_it_once_played(tmp_path):
    speaker = WavSpeaker(str(tmp_path / "spk.wav"), 24000)
    downlink, posted = Downlink(speaker, codec.PCM), Posted()
    clips = earcons.wire_clips(FeedbackConfig(), codec.PCM)
    player = EarconPlayer(clips, codec.PCM, downlink, threading.Lock(), posted)
    downlink.volume.set_volume_percent(50)
    assert player.play("ended", speaker_open=False, now_s=0.0) and player.tail_open
    assert posted.event.wait(2.0) and isinstance(posted[0], EarconDone)
    player.done(posted[0])
    assert not player.tail_open and speaker._thread is None   # closed: no thread left
    got = np.frombuffer(open(tmp_path / "spk.wav", "rb").read()[44:], dtype="<i2").astype(float)
    want = samples("ended") * 0.25   # volume 50 % = gain 0.25
    assert abs(np.abs(got).max() - np.abs(want).max()) <= 2
    assert not player.play("nope", speaker_open=False, now_s=0.0)


def test_a_drain_before_the_reply_began_is_the_earcons_and_is_not_the_replys():
    player = EarconPlayer({}, codec.PCM, None, threading.Lock(), lambda e: None)
    player.played_at_s = 10.0
    assert player.stale_drain(10.05, reply_begun_at_s=10.1)
    assert not player.stale_drain(10.3, reply_begun_at_s=10.1)    # the reply's own drain
    assert not player.stale_drain(12.0, reply_begun_at_s=5.0)     # no reply since the earcon


def test_a_press_refused_while_muted_sounds_the_error_earcon():
    ctrl = Controller(replace(SETTINGS, cues=ALL))
    ctrl.handle(m.SetMute(True, "ctl"), 0.0)
    actions = ctrl.handle(m.Press(), 1.0)
    assert [a.kind for a in actions if isinstance(a, m.Note)] == ["muted"] and cues_of(actions) == ["error"]
    assert not [a for a in actions if isinstance(a, m.OpenAudio)]   # idle: the player opens the speaker itself


class RecordingSpeaker:
    sample_rate_hz = 24000

    def __init__(self):
        self.written: list[int] = []

    def write(self, pcm16):
        self.written.append(len(pcm16))


def test_a_press_listening_cue_is_held_until_the_first_append_or_its_time():
    downlink = Downlink(RecordingSpeaker(), codec.PCM)
    player = EarconPlayer(earcons.wire_clips(FeedbackConfig(), codec.PCM), codec.PCM, downlink, threading.Lock(),
                          lambda e: None)
    offer = lambda cue, t, appended: player.offer(cue, t, appended=appended, audio_open=True,   # noqa: E731
                                                   speaker_open=True)
    assert offer("listening", 1.0, appended=False) == [] and player.wake_at(None) == 1.08
    assert player.wake_at(5.0) == 1.08 and player.wake_at(1.0) == 1.0
    assert offer(None, 1.05, appended=False) == []                   # not yet
    assert offer(None, 1.06, appended=True) == ["listening"]          # the first append went out
    assert downlink.speaker.written == [len(earcons.generated("listening", codec.PCM))]
    offer("listening", 2.0, appended=False)
    assert offer(None, 2.08, appended=False) == ["listening"]         # or its time came
    offer("listening", 3.0, appended=False)
    assert offer("thinking", 3.01, appended=False) == ["listening", "thinking"]   # never out of order
    assert offer("listening", 4.0, appended=True) == ["listening"]    # already appended (push to talk): at once
    assert player.wake_at(None) is None


def test_in_a_runtime_the_listening_earcon_never_comes_before_the_hold_without_an_append(tmp_path):
    from pivoice.realtime.scripted import ScriptedConnector
    from pivoice.runtime import Runtime
    from support.runtime_fakes import InertMic, InertUplink, ReadyTokens
    import time
    stamped: list[tuple[float, m.Note]] = []
    runtime = Runtime(Controller(replace(SETTINGS, cues=ALL)), mic=InertMic(),
                      uplink_factory=lambda rate: InertUplink(),
                      downlink=Downlink(WavSpeaker(str(tmp_path / "spk.wav"), 24000), codec.PCM),
                      tokens=ReadyTokens(), connector=ScriptedConnector(),
                      on_note=lambda n: stamped.append((time.monotonic(), n)),
                      earcon_clips=earcons.wire_clips(FeedbackConfig(), codec.PCM))
    runtime.start()
    try:
        runtime.post(m.Press())
        deadline = time.monotonic() + 2
        while not any(n.kind == "earcon" for _, n in stamped):
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        runtime.stop()
    pressed = next(t for t, n in stamped if n.kind == "pressed")
    beeped = next(t for t, n in stamped if n.kind == "earcon")
    assert earcons.LISTENING_HOLD_S <= beeped - pressed < earcons.LISTENING_HOLD_S + 0.1
