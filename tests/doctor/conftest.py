"""Shared helpers for the doctor tests: a real Config from a dict, and a Context holding it."""

from __future__ import annotations

import pytest

from pivoice import config
from pivoice.doctor.report import Context


@pytest.fixture
def make_ctx():
    def make(mic="default", speaker="default", mic_rate_hz=None, **sections) -> Context:
        data = {"tokens": {"backend_url": "http://127.0.0.1:9", "device_id": "kitchen", "secret_file": "/unused"},
                "audio": {"input": {"device": mic, "sample_rate_hz": mic_rate_hz}, "output": {"device": speaker}},
                **sections}
        ctx = Context("test.yaml")
        ctx.cfg = config.parse(data, "test.yaml")
        return ctx
    return make
