"""Edges that do nothing, for Runtime tests that drive it through events (the controller thread's view)."""


class InertMic:
    sample_rate_hz = 16000

    def open(self, on_frame, on_error=None): pass

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
