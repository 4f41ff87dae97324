"""The assistant edge (assistant.py): the controller's tool and transcript actions carried out."""

import json
import logging

from pivoice import messages as m
from pivoice.assistant import Assistant


class Sink:
    def __init__(self):
        self.records = []

    def record(self, kind, text):
        self.records.append((kind, text))

    def recent(self):
        return [{"kind": k, "text": t} for k, t in self.records]

    def close(self):
        pass


def test_with_no_tools_a_call_is_refused_to_the_model_not_left_waiting(caplog):
    posted = []
    assistant = Assistant()
    assistant.bind(posted.append)
    with caplog.at_level(logging.INFO, logger="pivoice.assistant"):
        assert assistant.execute(m.RunTool("call_1", "unlock_door", '{"pin": "1234"}'))
    [done] = posted
    assert (done.call_id, done.name, done.ok) == ("call_1", "unlock_door", False)
    assert json.loads(done.output)["error"] == {"type": "unknown_function",
                                               "message": "no function named 'unlock_door' on this device"}
    assert "unlock_door" in caplog.text and "1234" not in caplog.text   # arguments never logged
    assert assistant.execute(m.CancelTools(("call_1",)))   # nothing runs: nothing to cancel, no error


def test_texts_go_to_the_sink_and_show_in_status():
    sink = Sink()
    assistant = Assistant(sink=sink)
    assistant.bind(lambda ev: None)
    assert assistant.execute(m.RecordText("reply_text", "It is noon."))
    assert sink.records == [("reply_text", "It is noon.")]
    assert assistant.status() == {"recent_texts": [{"kind": "reply_text", "text": "It is noon."}]}
    assert not assistant.execute(m.Play(b""))   # not this edge's: the runtime reports it
