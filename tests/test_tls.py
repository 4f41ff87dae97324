"""pivoice.tls: one client context, trusting the system's hashed CA directory lazily.

Real handshakes on 127.0.0.1 against a server whose certificate comes from a test CA; the CA is
trusted the way a Pi trusts its CAs (a `<hash>.0` link in a directory like /etc/ssl/certs, given
as SSL_CERT_DIR). `cert_store_stats()` shows what OpenSSL actually loaded.
"""

from __future__ import annotations

import socket
import ssl
import threading

import pytest

from pivoice import tls
from support.certs import make_tls, trust_dir


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    made = make_tls(work)
    return made, trust_dir(work, made.ca_file)


@pytest.fixture
def server(certs):
    """A TLS server on a free loopback port that completes one handshake per connection."""
    made, _ = certs
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(made.cert_file, made.key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as wrapped:
                    wrapped.recv(1)
            except (OSError, ssl.SSLError):
                pass   # the client refused our certificate: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.shutdown(socket.SHUT_RDWR)   # wakes the accept(); close() alone would not
    listener.close()
    thread.join(5)


def handshake(context: ssl.SSLContext, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
            wrapped.sendall(b"x")


@pytest.fixture
def ca_dir_env(certs, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(certs[1]))
    return certs[1]


def test_the_system_context_loads_no_ca_until_a_handshake_needs_one(ca_dir_env, server):
    context = tls.build_context()
    assert tls.system_trust() == (None, str(ca_dir_env))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
    handshake(context, server)
    assert context.cert_store_stats()["x509_ca"] == 1   # our CA, read through its hash link
    # what every edge used to build: the whole bundle parsed up front
    assert ssl.create_default_context().cert_store_stats()["x509_ca"] > 50


def test_a_server_from_an_unknown_ca_is_refused(monkeypatch, server):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", "/etc/ssl/certs")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        handshake(tls.build_context(), server)


def test_ssl_cert_file_is_loaded_as_asked(certs, monkeypatch, server):
    made, directory = certs
    monkeypatch.setenv("SSL_CERT_FILE", str(made.ca_file))
    monkeypatch.setenv("SSL_CERT_DIR", str(directory))
    assert tls.system_trust() == (str(made.ca_file), str(directory))
    context = tls.build_context()
    assert context.cert_store_stats()["x509_ca"] == 1   # loaded at once: that is what the variable means
    handshake(context, server)


def test_a_directory_without_hash_links_falls_back_to_the_bundle_file(tmp_path, monkeypatch):
    (tmp_path / "some.pem").write_text("not linked\n")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    cafile, capath = tls.system_trust()
    assert capath == str(tmp_path) and cafile == ssl.get_default_verify_paths().cafile
    if cafile:   # Debian's /etc/ssl/certs/ca-certificates.crt
        assert tls.build_context().cert_store_stats()["x509_ca"] > 50


def test_a_ca_bundle_replaces_the_system_cas(certs, server):
    made, _ = certs
    handshake(tls.build_context(str(made.ca_file)), server)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls.build_context("/etc/ssl/certs/ca-certificates.crt"), server)


def test_a_bad_ca_bundle_is_an_error_for_the_caller(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ssl.SSLError):
        tls.build_context(str(bad))
    with pytest.raises(OSError):
        tls.build_context(str(tmp_path / "missing.pem"))


def test_the_system_context_is_one_for_every_caller_and_thread():
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(tls.client_context())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(seen) == 8 and all(context is tls.client_context() for context in seen)


def test_websocket_options_carry_the_shared_context_for_wss_only():
    assert tls.websocket_options("wss://api.openai.com/v1/realtime") == {"sslopt": {"context": tls.client_context()}}
    assert tls.websocket_options("ws://127.0.0.1:8765/v1/realtime") == {}
