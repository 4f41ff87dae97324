"""Home Assistant MQTT discovery for one pivoice device, and the state payloads its entities read.

Pure functions, no paho: `discovery_messages()` gives each entity's retained config message
(`<discovery_prefix>/<component>/<device_id>/<object_id>/config`), all sharing one `device`
block and the availability topic; `state_messages()` turns a `Runtime.status()` dict into the
retained state topics' payloads. A transcript or reply may be long while a Home Assistant
sensor state holds at most 255 characters: the state gets the first TEXT_STATE_CHARS, the
JSON attributes the text up to TEXT_ATTRIBUTE_CHARS.

Called on the MQTT thread; `conversation_count()` on the controller thread (the watcher).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pivoice.ends import NORMAL as NORMAL_ENDS   # the fleet view counts the same ends as abnormal
from pivoice.mqtt.config import MqttConfig

TEXT_STATE_CHARS = 255
TEXT_ATTRIBUTE_CHARS = 4000
USAGE_KEYS = ("input_text_tokens", "input_audio_tokens", "output_text_tokens", "output_audio_tokens",
              "total_tokens", "audio_sent_s", "audio_received_s", "responses")
USER_KINDS = ("user_transcript", "dictation")
REPLY_KINDS = ("reply_text",)


@dataclass(frozen=True)
class Topics:
    state: str
    user_text: str
    reply: str
    press: str
    end: str
    mute: str
    volume: str
    availability: str

    @classmethod
    def of(cls, cfg: MqttConfig) -> "Topics":
        b = cfg.base_topic
        return cls(state=f"{b}/state", user_text=f"{b}/user_text", reply=f"{b}/reply", press=f"{b}/press",
                   end=f"{b}/end", mute=f"{b}/mute/set", volume=f"{b}/volume/set",
                   availability=cfg.availability_topic)

    def commands(self) -> tuple[str, ...]:
        return self.press, self.end, self.mute, self.volume


def _sensor(name, value_template, state_topic, **extra) -> dict:
    return {"name": name, "state_topic": state_topic, "value_template": value_template, **extra}


def entities(t: Topics) -> list[tuple[str, str, dict]]:
    """(component, object_id, component-specific keys) of every entity."""
    usage = "{{ value_json.usage.%s }}"
    return [
        ("sensor", "state", _sensor("State", "{{ value_json.state }}", t.state, json_attributes_topic=t.state,
                                    icon="mdi:account-voice")),
        ("sensor", "last_user_text", _sensor("Last user transcript", "{{ value_json.text }}", t.user_text,
                                             json_attributes_topic=t.user_text, icon="mdi:account-voice")),
        ("sensor", "last_reply", _sensor("Last reply", "{{ value_json.text }}", t.reply,
                                         json_attributes_topic=t.reply, icon="mdi:message-reply-text")),
        ("sensor", "token", _sensor("Token status", "{{ value_json.token }}", t.state, entity_category="diagnostic",
                                    icon="mdi:key")),
        ("sensor", "conversations", _sensor("Conversations", "{{ value_json.conversations }}", t.state,
                                            state_class="total_increasing", icon="mdi:counter")),
        ("sensor", "abnormal_ends", _sensor("Abnormal ends", "{{ value_json.abnormal_ends }}", t.state,
                                            state_class="total_increasing", entity_category="diagnostic",
                                            icon="mdi:alert")),
        ("sensor", "total_tokens", _sensor("Tokens used", usage % "total_tokens", t.state,
                                           state_class="total_increasing", unit_of_measurement="tokens",
                                           icon="mdi:cash")),
        ("sensor", "audio_sent", _sensor("Audio sent", usage % "audio_sent_s", t.state, device_class="duration",
                                         state_class="total_increasing", unit_of_measurement="s")),
        ("sensor", "audio_received", _sensor("Audio received", usage % "audio_received_s", t.state,
                                             device_class="duration", state_class="total_increasing",
                                             unit_of_measurement="s")),
        ("button", "press", {"name": "Press", "command_topic": t.press, "payload_press": "PRESS",
                             "icon": "mdi:gesture-tap-button"}),
        ("button", "end", {"name": "End conversation", "command_topic": t.end, "payload_press": "PRESS",
                           "icon": "mdi:stop"}),
        ("switch", "mute", {"name": "Mute", "command_topic": t.mute, "state_topic": t.state,
                            "value_template": "{{ 'ON' if value_json.muted else 'OFF' }}",
                            "payload_on": "ON", "payload_off": "OFF", "state_on": "ON", "state_off": "OFF",
                            "icon": "mdi:microphone-off"}),
        ("number", "volume", {"name": "Volume", "command_topic": t.volume, "state_topic": t.state,
                              "value_template": "{{ value_json.volume }}", "min": 0, "max": 100, "step": 1,
                              "mode": "slider", "unit_of_measurement": "%", "icon": "mdi:volume-high"}),
    ]


def device_block(cfg: MqttConfig, version: str) -> dict:
    return {"identifiers": [f"pivoice_{cfg.device_id}"], "name": cfg.device_name, "manufacturer": "pivoice",
            "model": "pivoice voice assistant", "sw_version": version}


def discovery_messages(cfg: MqttConfig, version: str) -> list[tuple[str, str]]:
    """(topic, JSON payload) of each entity's discovery config, to publish retained."""
    t = Topics.of(cfg)
    device = device_block(cfg, version)
    messages = []
    for component, object_id, keys in entities(t):
        payload = {
            **keys,
            "unique_id": f"pivoice_{cfg.device_id}_{object_id}",
            "has_entity_name": True,
            "device": device,
            "origin": {"name": "pivoice", "sw_version": version},
            "availability": [{"topic": t.availability, "payload_available": "online",
                              "payload_not_available": "offline"}],
        }
        topic = f"{cfg.discovery_prefix}/{component}/{cfg.device_id}/{object_id}/config"
        messages.append((topic, json.dumps(payload, sort_keys=True)))
    return messages


def device_state(status: dict) -> str:
    """What the device is doing, as a person would say it."""
    phase = status.get("state")
    if phase == "idle" or phase is None:
        return "muted" if status.get("muted") else "idle"
    if phase == "connecting":
        return "connecting"
    if phase == "draining":
        return "ending"
    if status.get("playing"):
        return "speaking"
    if status.get("response_active"):
        return "thinking"
    return "listening"


def conversation_count(status: dict, previous: dict | None, counted: int) -> int:
    """Conversations since start: from the end counts (`ends`) when the runtime keeps them, else
    counted here, one for each return to idle the watcher sees."""
    ends = status.get("ends")
    if isinstance(ends, dict):
        return sum(v for v in ends.values() if isinstance(v, int))
    if previous is not None and previous.get("state") not in (None, "idle") and status.get("state") == "idle":
        return counted + 1
    return counted


def _usage(status: dict) -> dict:
    usage = status.get("usage") if isinstance(status.get("usage"), dict) else {}
    return {key: usage.get(key) or 0 for key in USAGE_KEYS}


def _text_payload(entry: dict | None) -> str:
    text = (entry or {}).get("text") or ""
    state = text if len(text) <= TEXT_STATE_CHARS else text[:TEXT_STATE_CHARS - 1] + "…"
    full = text[:TEXT_ATTRIBUTE_CHARS]
    return json.dumps({"text": state, "full_text": full, "truncated": len(text) > TEXT_ATTRIBUTE_CHARS,
                       "chars": len(text), "ts": (entry or {}).get("ts")}, ensure_ascii=False)


def _last(entries, kinds) -> dict | None:
    for entry in reversed(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict) and entry.get("kind") in kinds:
            return entry
    return None


def state_messages(t: Topics, status: dict, *, volume_percent: int, conversations: int) -> list[tuple[str, str]]:
    """(topic, payload) of the state topics for this status (publish retained; send only what changed)."""
    ends = status.get("ends") if isinstance(status.get("ends"), dict) else {}
    token = status.get("token") if isinstance(status.get("token"), dict) else {}
    state = {
        "state": device_state(status),
        "muted": bool(status.get("muted")),
        "volume": volume_percent,
        "token": token.get("state") or "unknown",
        "conversations": conversations,
        "abnormal_ends": sum(n for code, n in ends.items() if code not in NORMAL_ENDS and isinstance(n, int)),
        "usage": _usage(status),
        "last_end_reason": status.get("last_end_reason"),
        "last_end_code": status.get("last_end_code"),
    }
    if isinstance(status.get("last_conversation"), dict):
        state["last_conversation"] = status["last_conversation"]
    texts = status.get("recent_texts")
    return [(t.state, json.dumps(state, sort_keys=True, default=str)),
            (t.user_text, _text_payload(_last(texts, USER_KINDS))),
            (t.reply, _text_payload(_last(texts, REPLY_KINDS)))]
