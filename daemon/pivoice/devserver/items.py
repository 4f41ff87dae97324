"""Handlers for `conversation.item.create/retrieve/delete/truncate`, mixed into `RealtimeSession`.

Run on the ASGI event loop only, like the session itself.
"""

from __future__ import annotations

import base64
import copy
import logging

from pivoice.audio import codec

from . import events
from .conversation import ItemNotFound

log = logging.getLogger(__name__)


class ItemHandlers:
    def _item_or_error(self, event: dict, item_id: str, action: str) -> dict | None:
        try:
            return self.conversation.get(item_id)
        except ItemNotFound:
            self._error(event, f"Error {action} item: the item with id '{item_id}' does not exist.",
                        "item_not_found", "item_id")
            return None

    def _on_conversation_item_create(self, event: dict) -> None:
        item = copy.deepcopy(event["item"])
        previous_id = event.get("previous_item_id")
        if previous_id not in (None, "root") and previous_id not in self.conversation:
            self._error(event, f"Error adding item: the previous item with id '{previous_id}' does not exist.",
                        "item_not_found", "previous_item_id")
            return
        if item.get("id") and item["id"] in self.conversation:
            self._error(event, f"Error adding item: an item with id '{item['id']}' already exists.",
                        "invalid_value", "item.id")
            return
        if item.get("role") == "assistant" and any(p.get("type") == "output_audio" for p in item.get("content", [])):
            self._error(event, "Assistant messages cannot be created with audio content; use output_text.",
                        "invalid_value", "item.content")
            return
        if not self._tool_reference_ok(event, item):
            return
        item.setdefault("id", events.new_id("mcpar_" if item["type"] == "mcp_approval_response" else "item_"))
        if not item["type"].startswith("mcp_"):  # the SDK's MCP item models have no object/status
            item["object"] = "realtime.item"
            item.setdefault("status", "completed")
        previous = self.conversation.add(item, previous_id)
        self._emit(events.event("conversation.item.added", previous_item_id=previous, item=events.strip_audio(item)))
        self._emit(events.event("conversation.item.done", previous_item_id=previous, item=events.strip_audio(item)))
        plan = self.flow.item_created(item)  # an MCP approval answer makes the server respond (scriptflow.py)
        if plan is not None and self.active is not None:
            log.info("session %s: approval answered while %s is active; no response for it", self.id, self.active.id)
        elif plan is not None:
            self._start_response({}, True, plan=plan)

    def _tool_reference_ok(self, event: dict, item: dict) -> bool:
        if item["type"] == "function_call_output" and self.conversation.find(
                type="function_call", call_id=item["call_id"]) is None:
            # the live API's answer, seen in livekit/agents#3344 (code and message; param null)
            self._error(event, f"Tool call ID '{item['call_id']}' not found in conversation.", "invalid_tool_call_id")
            return False
        if item["type"] == "mcp_approval_response" and self.conversation.find(
                type="mcp_approval_request", id=item["approval_request_id"]) is None:
            self._error(event, f"Approval request ID '{item['approval_request_id']}' not found in conversation.",
                        "invalid_value", "item.approval_request_id")  # not confirmed against the live API
            return False
        return True

    def _on_conversation_item_retrieve(self, event: dict) -> None:
        item = self._item_or_error(event, event["item_id"], "retrieving")
        if item is not None:
            self._emit(events.event("conversation.item.retrieved", item=copy.deepcopy(item)))

    def _on_conversation_item_delete(self, event: dict) -> None:
        if self._item_or_error(event, event["item_id"], "deleting") is not None:
            self.conversation.delete(event["item_id"])
            self.responses.pop(event["item_id"], None)
            self._emit(events.event("conversation.item.deleted", item_id=event["item_id"]))

    def _on_conversation_item_truncate(self, event: dict) -> None:
        item_id, index, end_ms = event["item_id"], event["content_index"], event["audio_end_ms"]
        item = self._item_or_error(event, item_id, "truncating")
        if item is None:
            return
        if item.get("type") != "message" or item.get("role") != "assistant":
            self._error(event, "Only assistant messages can be truncated.", "invalid_value", "item_id")
            return
        content = item.get("content", [])
        if not 0 <= index < len(content) or content[index].get("type") != "output_audio":
            self._error(event, f"Content index {index} of item '{item_id}' is not audio content.",
                        "invalid_value", "content_index")
            return
        run = self.responses.get(item_id)
        if run is None and self.active is not None and self.active.item is item:
            run = self.active
        audio_ms = run.audio_ms_sent if run is not None else 0
        if end_ms < 0 or end_ms > audio_ms:
            self._error(event, f"Audio content of {audio_ms}ms is already shorter than {end_ms}ms",
                        "invalid_value", "audio_end_ms")
            return
        if run is not None:
            _truncate_run(run, content[index], end_ms, audio_ms)
        self._emit(events.event("conversation.item.truncated", item_id=item_id, content_index=index,
                                audio_end_ms=end_ms))


def _truncate_run(run, part: dict, end_ms: int, audio_ms: int) -> None:
    """Cut the stored audio and drop the transcript the listener never heard (proportional estimate)."""
    fmt = run.spec.output_format
    sample_bytes = 2 if fmt == codec.PCM else 1
    keep = int(end_ms * codec.wire_rate_hz(fmt) / 1000) * sample_bytes
    del run.audio_wire[keep:]
    run.audio_ms_sent = end_ms
    part["audio"] = base64.b64encode(bytes(run.audio_wire)).decode()
    transcript = part.get("transcript") or ""
    if audio_ms and transcript:
        cut = transcript[:int(len(transcript) * end_ms / audio_ms)]
        part["transcript"] = cut if end_ms == audio_ms or " " not in cut else cut.rsplit(" ", 1)[0]
