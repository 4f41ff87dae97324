"""Edges that do nothing, for Runtime tests that drive it through events (the controller thread's view)."""


class InertMic:
    sample_rate_hz = 16000

    def open(self, on_frames, on_error=None): pass

    def check_stream(self): pass

    def stats(self): return {}

    def close(self): pass


class InertUplink:
    chunk_ms, frame_ms = 40, 20

    def open_now(self): return []

    def process_frames(self, frames): return []


class InertDownlink:
    first_sample_at = None

    def open(self, on_drained, on_error=None): pass

    def check_stream(self): pass

    def stats(self): return {}

    def close(self): pass

    def device_first_sample_at(self): return None


class Key:
    class value:   # noqa: N801 - shaped like tokens.EphemeralKey.value
        @staticmethod
        def reveal() -> str:
            return "ek_test_not_a_secret"


class ReadyTokens:
    """A token provider with a key always cached: a press connects at once."""

    def request(self, on_ready, on_failed):
        on_ready(Key())

    def status(self):
        return {"state": "ok"}
