"""Button modes in the real daemon process against the real dev server and token backend, pressed and
released through the control socket (as the GPIO button posts the same events): push_to_talk commits
at the release and asks for the reply with manual turns; one_shot ends once the reply was heard."""

from __future__ import annotations

import pytest

from pivoice import control
from support.fixtures_audio import make_speech_wav, read_wav
from support.stack import offline_stack, running

pytestmark = pytest.mark.integration

QUESTION = "What time is it?"


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    return make_speech_wav(tmp_path_factory.mktemp("speech") / "question.wav", QUESTION,
                           rate_hz=16000, lead_silence_s=0.1, tail_silence_s=1.0)


def kinds(daemon) -> list[str]:
    return [entry["kind"] for entry in daemon.timeline()]


def sent_types(stack) -> list[str]:
    records = stack.client_events()
    bad = [r for r in records if not r["valid"] or r["unknown_fields"]]
    assert not bad, bad[:3]
    return [r["event"]["type"] for r in records]


def test_push_to_talk_release_commits_and_asks_for_the_reply(tmp_path, question_wav):
    reply = tmp_path / "reply.wav"
    with offline_stack(tmp_path, "--mode", "parrot") as stack:   # the reply: the question, echoed (short)
        config = stack.config(mic=f"wav:{question_wav}", speaker=f"wav:{reply}",
                              button={"pin": "GPIO17", "pin_factory": "mock", "mode": "push_to_talk"},
                              session_audio={"input": {"turn_detection": None}}, conversation={"idle_timeout_s": 1})
        with running(stack.daemon(config)) as daemon:
            assert daemon.ctl("press") == {"ok": True}
            start = daemon.wait_for("pressed", timeout_s=10)
            # the question is said while the button is held; the gate closing ends no turn
            daemon.wait_for("local_speech_stop", timeout_s=20)
            assert "push_released" not in kinds(daemon) and "committed" not in kinds(daemon)
            assert daemon.ctl("release") == {"ok": True}
            released = daemon.wait_for("push_released", timeout_s=10)
            daemon.wait_for("reply_played", timeout_s=30)
            ended = daemon.wait_for("ended", timeout_s=15)
            status = daemon.status()
        sent = sent_types(stack)
    update = next(r["event"] for r in stack.client_events() if r["event"]["type"] == "session.update")
    assert update["session"]["audio"]["input"]["turn_detection"] is None
    assert sent.count("input_audio_buffer.commit") == 1 and sent.count("response.create") == 1
    assert sent.index("input_audio_buffer.commit") < sent.index("response.create")
    assert max(i for i, t in enumerate(sent) if t == "input_audio_buffer.append") < sent.index(
        "input_audio_buffer.commit")   # nothing appended after the release's commit
    timeline = kinds(daemon)
    assert "error" not in timeline and "speech_start" not in timeline   # no server VAD at work
    assert timeline.index("push_released") < timeline.index("committed") < timeline.index("reply_audio")
    assert "turn committed" in released["text"] and released["t"] > start["t"]
    assert "no speech" in ended["text"] and status["last_end_code"] == "idle" and status["muted"] is False
    samples, rate_hz, _ = read_wav(reply)   # parrot: the reply is the committed audio, so the question was in it
    assert len(samples) / rate_hz > 0.8 and abs(samples.astype(int)).max() > 1000


def test_one_shot_ends_after_the_reply_was_heard(tmp_path, question_wav):
    reply = tmp_path / "reply.wav"
    with offline_stack(tmp_path, "--mode", "parrot") as stack:   # the reply: the question, echoed (short)
        config = stack.config(mic=f"wav:{question_wav}", speaker=f"wav:{reply}",
                              button={"pin": "GPIO17", "pin_factory": "mock", "mode": "one_shot"},
                              conversation={"idle_timeout_s": 30})
        with running(stack.daemon(config)) as daemon:
            daemon.ctl("press")
            played = daemon.wait_for("reply_played", timeout_s=40)
            ended = daemon.wait_for("ended", timeout_s=5)
            status = daemon.status()
            # muted (ctl, as MQTT posts it too): a press is refused until unmuted
            assert control.request(str(daemon.socket_path), "mute", value="on")["ok"]
            daemon.ctl("press")
            refused = daemon.wait_for("muted", timeout_s=5)
            muted_status = daemon.status()
            assert control.request(str(daemon.socket_path), "mute", value="off")["ok"]
            before = len(daemon.timeline())
            daemon.ctl("press")
            daemon.wait_for("pressed", timeout_s=5, after=before)
        sent = sent_types(stack)
    assert "refused" in refused["text"] and muted_status["muted"] is True and muted_status["state"] == "idle"
    assert "one question answered" in ended["text"] and ended["t"] - played["t"] < 1.0
    assert status["state"] == "idle" and status["last_end_code"] == "user"
    assert "input_audio_buffer.append" in sent and "response.create" not in sent   # the server VAD answered
