"""Secret redaction and the device secret file reader."""

import logging
import os

import pytest

from pivoice.tokens import EphemeralKey, Secret, SecretFileError, TokenError, read_secret_file


def test_secret_never_shows_its_value():
    s = Secret("ek_abcdef123456")
    for text in (repr(s), str(s), f"{s}", f"{s:>30}", "%s" % s, repr([s]), repr({"k": s})):
        assert "abcdef" not in text
    assert str(s) == "ek_…(redacted)"
    assert str(Secret("hunter2")) == "…(redacted)"
    assert s.reveal() == "ek_abcdef123456"


def test_secret_equality_and_pickle_refusal():
    import pickle
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("") and Secret("x")
    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))
    with pytest.raises(TypeError):
        Secret(b"bytes")


def test_ephemeral_key_repr_is_redacted_and_validity_is_relative():
    key = EphemeralKey(Secret("ek_zzzsecretzzz"), expires_at_mono_s=100.0, session={"type": "realtime"})
    assert "zzzsecretzzz" not in repr(key)
    assert key.valid_for_s(40.0) == 60.0
    assert key.valid_for_s(130.0) == -30.0


def test_token_error_fields():
    err = TokenError("rate_limited", "backend x answered 429", http_status=429, retry_after_s=7.0)
    assert (err.code, err.http_status, err.retry_after_s, str(err)) == ("rate_limited", 429, 7.0,
                                                                        "backend x answered 429")


def test_read_secret_file_strips_whitespace(tmp_path):
    p = tmp_path / "secret"
    p.write_text("  s3cret-value \n")
    p.chmod(0o600)
    assert read_secret_file(p).reveal() == "s3cret-value"


@pytest.mark.parametrize("content, reason", [
    (b"", "is empty"), (b"  \n\t\n", "is empty"), (b"line1\nline2\n", "single line"),
    (b"\xff\xfe\x00", "not UTF-8"), (b"x" * 5000, "too large"),
])
def test_read_secret_file_rejects_bad_content(tmp_path, content, reason):
    p = tmp_path / "secret"
    p.write_bytes(content)
    p.chmod(0o600)
    with pytest.raises(SecretFileError) as info:
        read_secret_file(p)
    assert str(p) in str(info.value) and reason in str(info.value)


def test_read_secret_file_missing_and_directory(tmp_path):
    with pytest.raises(SecretFileError, match=r"nope.*does not exist"):
        read_secret_file(tmp_path / "nope")
    with pytest.raises(SecretFileError, match="not a regular file"):
        read_secret_file(tmp_path)


def test_read_secret_file_unreadable(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads mode-000 files; the PermissionError path cannot be reached")
    p = tmp_path / "secret"
    p.write_text("x")
    p.chmod(0)
    with pytest.raises(SecretFileError, match="permission denied"):
        read_secret_file(p)


def test_read_secret_file_warns_on_open_permissions_without_leaking(tmp_path, caplog):
    p = tmp_path / "secret"
    p.write_text("topsecretvalue\n")
    p.chmod(0o644)
    with caplog.at_level(logging.DEBUG):
        assert read_secret_file(p).reveal() == "topsecretvalue"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and str(p) in warnings[0].getMessage() and "644" in warnings[0].getMessage()
    assert "topsecretvalue" not in caplog.text
    caplog.clear()
    p.chmod(0o600)
    with caplog.at_level(logging.DEBUG):
        read_secret_file(p)
    assert not caplog.records
