"""The fault matrix, server rows (issue 7): every fault ends clearly, at the right level, keeps what
should be kept, and the next press works.

Server faults run in-process (the real Runtime, Controller, Downlink and a paced WAV speaker) with
the scripted peer as the server, whose frames go through the real event parser. Faults only a
socket can show (a stall that still answers pings, a refused upgrade, an upgrade never answered, a
huge frame) use the real `RealtimeConnection` against a raw WebSocket server on 127.0.0.1
(support/ws_peer.py). Network rows: test_fault_matrix_network.py; token rows:
test_fault_matrix_tokens.py; process rows: test_fault_matrix_process.py; audio rows:
test_fault_matrix_audio.py. The README's "Fault matrix" table lists them all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import pytest

from pivoice.realtime.scripted import ScriptedConnector, reply_events, session_created
from pivoice.realtime.session import PING_INTERVAL_S, RealtimeConnector
from support.fault_rig import SETTINGS, FaultRig, check_end, delta, next_press_works, normal_reply, tone
from support.ws_peer import WsPeer

REPLY_S = 0.6
HEARD_SLACK_MS = 30


@pytest.fixture(autouse=True)
def _log_info(caplog):
    caplog.set_level(logging.INFO)


def expect_level(close_code: int) -> str:
    return "error" if close_code == 4000 else "warning"   # 4xxx: the API retired or refused something


# ---- server: stalls -----------------------------------------------------------------------------

def test_server_accepts_the_socket_but_never_acknowledges_the_session(tmp_path, caplog):
    peer = ScriptedConnector(greet=False)
    with FaultRig(tmp_path, connector=peer) as rig:
        mark = rig.press()
        peer.wait_for_connection(1)
        check_end(rig, caplog, mark, "not_acknowledged", "warning",
                  "server did not acknowledge the session within 2 s")
        next_press_works(rig, scripted=peer)


def test_server_silent_after_the_session_while_the_user_is_silent_ends_idle(tmp_path, caplog):
    peer = ScriptedConnector()
    with FaultRig(tmp_path, connector=peer) as rig:
        mark = rig.press()
        peer.wait_for_connection(1)
        check_end(rig, caplog, mark, "idle", "info", "no speech for 2 s")
        next_press_works(rig, scripted=peer)


@pytest.mark.parametrize("pongs", [True, False], ids=["with-pongs", "without-pongs"])
def test_server_stalls_mid_reply(tmp_path, caplog, pongs):
    """Pongs prove the link, not progress: the stall ends the reply either way, after what arrived
    was played. With pongs the stall timer outlasts the reader's first ping, so a live link that
    answers pings is seen not to count as progress."""
    stall_s = PING_INTERVAL_S + 1 if pongs else 1
    def stall_mid_reply(link):
        link.accept()
        link.send(session_created())
        link.wait_for("session.update")
        link.send_all(reply_events("resp_1", "item_1", tone(REPLY_S), done=False))
        link.stall(timeout_s=stall_s + 5)
    with WsPeer() as ws:
        ws.queue(stall_mid_reply, pongs=pongs)
        with FaultRig(tmp_path, connector=RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2),
                      settings=replace(SETTINGS, reply_stall_s=stall_s)) as rig:
            mark = rig.press()
            note = check_end(rig, caplog, mark, "stalled", "warning",
                             f"server stopped answering mid-reply (nothing for {stall_s:.0f} s)",
                             f"reply cut off after {REPLY_S * 1000:.0f} ms", timeout_s=stall_s + 5)
            assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS, note.text
            if pongs:
                assert ws.links[0].pings >= 1, "the reader never pinged: the row did not test pongs"
            next_press_works(rig, ws=ws)


# ---- server: closes at each phase ---------------------------------------------------------------

PHASES = ["connecting", "listening", "reply-in-flight", "reply-playing"]


@pytest.mark.parametrize("code", [1000, 1001, 1011, 4000])
@pytest.mark.parametrize("phase", PHASES)
def test_server_closes(tmp_path, caplog, phase, code):
    """`connecting`: the socket is open, the session not yet acknowledged; `reply-in-flight`: some
    reply audio arrived, not all; `reply-playing`: all of it arrived and is still playing."""
    peer = ScriptedConnector(greet=phase != "connecting")
    with FaultRig(tmp_path, connector=peer) as rig:
        mark = rig.press()
        conn = peer.wait_for_connection(1)
        if phase.startswith("reply"):
            conn.play_all(reply_events("resp_1", "item_1", tone(REPLY_S), done=phase == "reply-playing"))
            rig.wait_note("reply_audio", mark)
        else:
            time.sleep(0.1)
        conn.server_close(code, "scripted close")
        says = [f"server closed the session ({code}", "): scripted close"]
        if phase == "reply-in-flight":
            says += [f"reply cut off after {REPLY_S * 1000:.0f} ms", "what arrived was played"]
        elif phase == "reply-playing":
            says += ["reply played out"]
        check_end(rig, caplog, mark, "server_closed", expect_level(code), *says)
        if phase.startswith("reply"):
            assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS
        next_press_works(rig, scripted=peer)


def test_server_close_frame_without_a_status_mid_reply(tmp_path, caplog):
    peer = ScriptedConnector()
    with FaultRig(tmp_path, connector=peer) as rig:
        mark = rig.press()
        conn = peer.wait_for_connection(1)
        conn.play_all(reply_events("resp_1", "item_1", tone(REPLY_S), done=False))
        rig.wait_note("reply_audio", mark)
        conn.server_close(None)
        check_end(rig, caplog, mark, "server_closed", "warning", "server closed the session (1005",
                  f"reply cut off after {REPLY_S * 1000:.0f} ms", "what arrived was played")
        assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS
        next_press_works(rig, scripted=peer)


# ---- server: refused upgrades, bad and odd events -------------------------------------------------

@pytest.mark.parametrize("status,code", [(401, "invalid_api_key"), (403, "forbidden"), (429, "rate_limit_exceeded"),
                                         (500, "server_error")])
def test_server_refuses_the_handshake(tmp_path, caplog, status, code):
    with WsPeer() as ws:
        ws.queue(lambda link: link.refuse(status, {"error": {"code": code, "message": f"scripted {status}"}}))
        with FaultRig(tmp_path, connector=RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2)) as rig:
            mark = rig.press()
            check_end(rig, caplog, mark, "connect_failed", "error",
                      f"handshake refused with HTTP {status}: {code} (scripted {status})")
            next_press_works(rig, ws=ws)


def test_server_sends_malformed_events_mid_reply(tmp_path, caplog):
    """Each bad event is dropped with one warning (no traceback); the good ones around it play."""
    peer = ScriptedConnector()
    audio = tone(REPLY_S)
    good = reply_events("resp_1", "item_1", audio)
    bad = [{**delta("resp_1", b"\x01\x00" * 10), "content_index": "zero"},
           {"type": "response.done", "response": "not an object"},
           {"type": "error", "error": None},
           {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
            "content_index": 0, "delta": "!!not base64!!"},
           {"type": 5},
           '{"type": "response.created", ',
           "[1, 2, 3]"]
    with FaultRig(tmp_path, connector=peer) as rig:
        mark = rig.press()
        conn = peer.wait_for_connection(1)
        conn.play(good[0])
        for event, bad_event in zip(good[1:], bad):
            conn.play(bad_event)
            conn.play(event)
        conn.play_all(good[1 + len(bad):])
        conn.play_binary(b"\x00\x01binary")
        conn.play(delta("resp_1", b"\x01\x00\x02"))   # odd-length PCM: dropped by the controller
        rig.wait_note("reply_played", mark)
        end_mark = rig.press()
        check_end(rig, caplog, end_mark, "user", "info", "ended by a press")
    assert conn.dropped >= len(bad), conn.dropped
    assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert drops and all(r.levelname == "WARNING" for r in drops)
    assert any(n.kind == "bad_event" for n in rig.notes)


def test_server_sends_huge_events(tmp_path, caplog):
    """Through the real socket: a 4 MB transcript and a 2 MB unknown event are read, shortened for
    the log, and the reply around them still plays."""
    def huge(link):
        link.accept()
        link.send(session_created())
        link.wait_for("session.update")
        events = normal_reply("resp_1", REPLY_S)
        link.send_all(events[:-2])
        link.send({"type": "response.output_audio_transcript.done", "response_id": "resp_1",
                   "transcript": "la " * ((4 << 20) // 3)})
        link.send({"type": "x.unknown", "blob": "y" * (2 << 20)})
        link.send_all(events[-1:])
        link.stall()
    with WsPeer() as ws:
        ws.queue(huge)
        with FaultRig(tmp_path, connector=RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=2)) as rig:
            mark = rig.press()
            rig.wait_note("reply_played", mark)
            check_end(rig, caplog, rig.press(), "user", "info", "ended by a press")
            assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS
            assert any(n.kind == "assistant" for n in rig.notes[mark:])
            assert max(len(r.getMessage()) for r in caplog.records) < 4000
            next_press_works(rig, ws=ws)


def test_server_never_answers_the_upgrade(tmp_path, caplog):
    """TCP accepted, no HTTP answer: the press is not left connecting. The daemon gives the dial and
    the controller the same realtime.connect_timeout_s, so either may say it first (both ERROR)."""
    def silent(link):
        link.read_request()
        time.sleep(SETTINGS.connect_timeout_s + 1)
        link.sock.close()
    with WsPeer() as ws:
        ws.queue(silent)
        connector = RealtimeConnector(ws.url, "gpt-realtime", connect_timeout_s=SETTINGS.connect_timeout_s)
        with FaultRig(tmp_path, connector=connector) as rig:
            mark = rig.press()
            note = rig.wait_end(mark)
            code = "connect_timeout" if "within" in note.text else "connect_failed"
            says = "could not connect within 2 s" if code == "connect_timeout" else "timed out"
            check_end(rig, caplog, mark, code, "error", says)
            time.sleep(1.2)   # the silent script lets go of its connection
            next_press_works(rig, ws=ws)


def test_server_sends_deltas_slower_than_real_time(tmp_path, caplog):
    """100 ms of audio every 400 ms: the speaker runs dry between deltas, but it is a slow reply, not
    a stall (each gap < reply_stall_s) and not the end of the reply; all of it is heard."""
    peer = ScriptedConnector()
    audio = tone(REPLY_S)
    events = reply_events("resp_1", "item_1", audio, chunk_bytes=4800)
    with FaultRig(tmp_path, connector=peer) as rig:
        mark = rig.press()
        conn = peer.wait_for_connection(1)
        for event in events:
            conn.play(event)
            if event["type"].endswith(".delta"):
                time.sleep(0.4)
        rig.wait_note("reply_played", mark)
        assert not [n for n in rig.notes[mark:] if n.kind == "ended"]
        end_mark = rig.press()
        check_end(rig, caplog, end_mark, "user", "info", "ended by a press")
        assert rig.heard_ms() >= REPLY_S * 1000 - HEARD_SLACK_MS
        next_press_works(rig, scripted=peer)
