"""Fixtures for the dev-server tests: speech audio made with espeak-ng + sox, and a running server."""

from __future__ import annotations

import subprocess

import pytest

from support.devserver import run_dev_server

SPEECH_TEXT = "hello dev server what time is it"


@pytest.fixture(scope="session")
def speech_pcm24(tmp_path_factory) -> bytes:
    """About 2 s of espeak-ng speech as s16le mono 24 kHz (generated per run, never committed)."""
    work = tmp_path_factory.mktemp("speech")
    wav, raw = work / "speech.wav", work / "speech.raw"
    subprocess.run(["espeak-ng", "-w", str(wav), SPEECH_TEXT], check=True, capture_output=True)
    subprocess.run(["sox", str(wav), "-r", "24000", "-c", "1", "-b", "16", "-e", "signed-integer",
                    "-t", "raw", str(raw)], check=True, capture_output=True)
    return raw.read_bytes()


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    with run_dev_server(tmp_path_factory.mktemp("devserver"), "--audio-pace", "8") as server:
        yield server
