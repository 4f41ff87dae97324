import threading

import pytest


@pytest.fixture
def thread_crashes(monkeypatch):
    """Exceptions that escaped any thread (the reader thread above all) during the test."""
    crashes = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args))
    return crashes
