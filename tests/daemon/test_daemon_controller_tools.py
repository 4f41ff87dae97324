"""The controller's function-call rules as tables (controller_tools.py): calls start when their
arguments are complete, outputs go back in call order once the response is done and every call has
finished, then one response.create; barge-in and the end cancel what runs."""

import json

from pivoice import messages as m
from pivoice.controller import IDLE
from test_daemon_controller import active, kinds, run, speaking


def created(rid):
    return m.ServerEvent({"type": "response.created", "response": {"id": rid}})


def args_done(rid, call_id, name, arguments="{}"):
    return m.ServerEvent({"type": "response.function_call_arguments.done", "response_id": rid,
                          "call_id": call_id, "name": name, "arguments": arguments})


def done(rid, calls=()):
    return m.ServerEvent({"type": "response.done", "response": {
        "id": rid, "status": "completed", "usage": {"output_tokens": 5},
        "function_calls": [{"call_id": c, "name": n, "arguments": "{}", "response_id": rid} for c, n in calls]}})


def output_item(call_id, output):
    return ("Send", (("item", (("call_id", call_id), ("output", output), ("type", "function_call_output"))),
                     ("type", "conversation.item.create")))


def sends(actions):
    """Send actions as (type, item-as-sorted-tuple) for comparison."""
    out = []
    for a in actions:
        if isinstance(a, m.Send):
            fields = {k: v for k, v in a.event.items() if k != "event_id"}
            if "item" in fields:
                fields["item"] = tuple(sorted(fields["item"].items()))
            out.append(("Send", tuple(sorted(fields.items()))))
    return out


RESPONSE_CREATE = ("Send", (("type", "response.create"),))


def test_two_calls_run_concurrently_and_are_answered_in_call_order_after_response_done():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    a1 = ctrl.handle(args_done("resp_1", "call_a", "get_time"), 1.1)
    a2 = ctrl.handle(args_done("resp_1", "call_b", "set_timer", '{"minutes": 5}'), 1.2)
    assert [(a.call_id, a.name, a.arguments) for a in a1 + a2 if isinstance(a, m.RunTool)] == [
        ("call_a", "get_time", "{}"), ("call_b", "set_timer", '{"minutes": 5}')]
    # the second finishes first: nothing goes out until both are in and the response is done
    assert sends(ctrl.handle(m.ToolDone("call_b", "set_timer", '{"ok": true, "id": "t1"}'), 1.3)) == []
    assert sends(ctrl.handle(done("resp_1", [("call_a", "get_time"), ("call_b", "set_timer")]), 1.4)) == []
    assert ctrl.tools_busy
    actions = ctrl.handle(m.ToolDone("call_a", "get_time", '{"ok": true, "time": "12:00"}'), 1.5)
    assert sends(actions) == [output_item("call_a", '{"ok": true, "time": "12:00"}'),
                              output_item("call_b", '{"ok": true, "id": "t1"}'), RESPONSE_CREATE]
    assert ("Note", "tool_results") in kinds(actions) and not ctrl.tools_busy


def test_a_call_listed_only_in_response_done_is_started_then_answered():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    actions = ctrl.handle(done("resp_1", [("call_a", "get_time")]), 1.1)
    assert [a.call_id for a in actions if isinstance(a, m.RunTool)] == ["call_a"]
    # announced again (arguments.done after all): not started twice
    assert not [a for a in ctrl.handle(args_done("resp_1", "call_a", "get_time"), 1.2) if isinstance(a, m.RunTool)]
    assert sends(ctrl.handle(m.ToolDone("call_a", "get_time", "{}"), 1.3)) == [output_item("call_a", "{}"),
                                                                                RESPONSE_CREATE]


def test_response_create_waits_for_a_response_the_server_started_meanwhile():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    ctrl.handle(args_done("resp_1", "call_a", "get_time"), 1.1)
    ctrl.handle(done("resp_1"), 1.2)
    ctrl.handle(created("resp_2"), 1.3)   # the user spoke: server VAD started another response
    actions = ctrl.handle(m.ToolDone("call_a", "get_time", "{}"), 1.4)
    assert sends(actions) == [output_item("call_a", "{}")]   # a response.create now would be refused
    assert sends(ctrl.handle(done("resp_2"), 1.5)) == [RESPONSE_CREATE]


def test_press_while_a_tool_runs_cancels_it_and_tells_the_model_without_asking_for_an_answer():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    ctrl.handle(args_done("resp_1", "call_a", "slow_tool"), 1.1)
    ctrl.handle(done("resp_1"), 1.2)
    actions = ctrl.handle(m.Press(), 2.0)
    assert [a.call_ids for a in actions if isinstance(a, m.CancelTools)] == [("call_a",)]
    [item] = sends(actions)
    assert item[1][0][1][0] == ("call_id", "call_a") and RESPONSE_CREATE not in sends(actions)
    output = dict(item[1][0][1])["output"]
    assert json.loads(output)["error"]["type"] == "cancelled"
    assert ctrl.phase != IDLE   # the press interrupted; it did not end the conversation
    # the cancelled call's late result is dropped
    assert ctrl.handle(m.ToolDone("call_a", "slow_tool", "{}"), 3.0) == []


def test_barge_in_during_a_reply_cancels_pending_calls_of_that_response():
    ctrl = active()
    speaking(ctrl)
    ctrl.handle(args_done("resp_1", "call_a", "get_time"), 1.1)
    actions = ctrl.handle(m.Press(), 1.2)
    assert ("StopPlayback",) in kinds(actions) and ("CancelTools",) in kinds(actions)
    # arguments of the cancelled response arriving late start nothing
    assert not [a for a in ctrl.handle(args_done("resp_1", "call_b", "get_time"), 1.3) if isinstance(a, m.RunTool)]


def test_the_end_of_the_conversation_cancels_running_calls_without_telling_a_closed_session():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    ctrl.handle(args_done("resp_1", "call_a", "slow_tool"), 1.1)
    actions = ctrl.handle(m.SocketClosed(1000, "bye"), 1.2)
    assert [a.call_ids for a in actions if isinstance(a, m.CancelTools)] == [("call_a",)]
    assert sends(actions) == [] and ctrl.phase == IDLE


def test_idle_timeout_waits_for_a_running_tool():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    ctrl.handle(args_done("resp_1", "call_a", "slow_tool"), 1.1)
    ctrl.handle(done("resp_1"), 1.2)
    assert run(ctrl, [(30.0, m.Tick())]) == [] and ctrl.phase != IDLE


def test_end_conversation_ends_after_the_goodbye_is_heard():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    ctrl.handle(args_done("resp_1", "call_a", "end_conversation"), 1.1)
    ctrl.handle(m.ToolDone("call_a", "end_conversation", '{"ok": true}', effect="end_conversation"), 1.2)
    assert sends(ctrl.handle(done("resp_1"), 1.3))[-1] == RESPONSE_CREATE
    assert ctrl.phase != IDLE            # not before the model has said goodbye
    speaking(ctrl, 1.4, "resp_2")
    ctrl.handle(done("resp_2"), 1.5)
    assert ctrl.phase != IDLE            # still playing
    actions = ctrl.handle(m.PlaybackDrained(), 2.0)
    assert ctrl.phase == IDLE and ("Note", "ended") in kinds(actions)
    assert ctrl.last_end_code == "user" and "end_conversation" in ctrl.last_end_reason


def test_a_text_reply_is_recorded_for_the_transcript_sink():
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    actions = ctrl.handle(m.ServerEvent({"type": "response.output_text.done", "text": "It is noon."}), 1.1)
    assert [(a.kind, a.text) for a in actions if isinstance(a, m.RecordText)] == [("reply_text", "It is noon.")]


def test_user_transcripts_are_recorded_and_a_dictation_turn_is_committed_but_never_answered():
    from dataclasses import replace
    from test_daemon_controller import BASE
    ctrl = active()
    actions = ctrl.handle(m.ServerEvent({"type": "conversation.item.input_audio_transcription.completed",
                                         "transcript": "what time is it"}), 1.0)
    assert [(a.kind, a.text) for a in actions if isinstance(a, m.RecordText)] == [
        ("user_transcript", "what time is it")]
    dictation = active(replace(BASE, manual_turns=True, dictation=True))
    dictation.handle(m.SpeechStarted(), 1.0)
    actions = dictation.handle(m.SpeechEnded(), 2.0)
    assert sends(actions) == [("Send", (("type", "input_audio_buffer.commit"),))]   # no response.create
    actions = dictation.handle(m.ServerEvent({"type": "conversation.item.input_audio_transcription.completed",
                                              "transcript": "buy milk"}), 2.5)
    assert [(a.kind, a.text) for a in actions if isinstance(a, m.RecordText)] == [("dictation", "buy milk")]


def test_a_spoken_reply_is_recorded_by_its_transcript():
    # the transcript log and MQTT's last-reply sensor get what was said aloud, not only text replies
    ctrl = active()
    ctrl.handle(created("resp_1"), 1.0)
    actions = ctrl.handle(m.ServerEvent({"type": "response.output_audio_transcript.done",
                                         "transcript": "It is noon."}), 1.1)
    assert [(a.kind, a.text) for a in actions if isinstance(a, m.RecordText)] == [("reply_text", "It is noon.")]
    empty = ctrl.handle(m.ServerEvent({"type": "response.output_audio_transcript.done", "transcript": ""}), 1.2)
    assert not [a for a in empty if isinstance(a, m.RecordText)]
