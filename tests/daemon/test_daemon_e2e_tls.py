"""The real daemon over TLS, as on a Pi: the token backend on https://, the Realtime session on wss://.

The dev server and the backend serve a certificate from a test CA; every process trusts that CA
the way a Pi trusts its CAs, through a hashed CA directory (SSL_CERT_DIR), so the daemon's one
shared context (pivoice.tls) verifies both, and nothing is configured with `ca_bundle`.
"""

from __future__ import annotations

import pytest

from support.certs import make_tls, trust_dir
from support.fixtures_audio import make_speech_wav
from support.stack import offline_stack, running

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_env(tmp_path, monkeypatch):
    made = make_tls(tmp_path / "tls")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(trust_dir(tmp_path / "tls", made.ca_file)))
    return made


def test_a_conversation_over_https_and_wss(tmp_path, tls_env):
    question = make_speech_wav(tmp_path / "question.wav", "Is the kitchen open today?", rate_hz=16000,
                               lead_silence_s=0.1, tail_silence_s=2.0)
    served = {"cert_file": str(tls_env.cert_file), "key_file": str(tls_env.key_file)}
    with offline_stack(tmp_path, "--tls-cert", served["cert_file"], "--tls-key", served["key_file"],
                       tls=served) as stack:
        assert stack.tokens.url.startswith("https://") and stack.dev.ws_url.startswith("wss://")
        config = stack.config(mic=f"wav:{question}", speaker=f"wav:{tmp_path / 'reply.wav'}")
        with running(stack.daemon(config)) as daemon:
            assert daemon.ctl("press") == {"ok": True}
            daemon.wait_for("reply_played", timeout_s=40)
            status = daemon.status()
        sent = {record["event"]["type"] for record in stack.client_events()}
    assert {"session.update", "input_audio_buffer.append"} <= sent
    assert status["token"]["state"] == "ok" and status["metrics"]["wire_audio_bytes"] > 0

