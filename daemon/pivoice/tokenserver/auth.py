"""Device secrets: generation, hashing, constant-time comparison, HTTP Basic parsing.

Device secrets are 256-bit random values from `secrets.token_urlsafe(32)`. For such
secrets a single SHA-256 is an adequate stored form: slow password hashes (bcrypt,
scrypt, argon2) exist to make guessing low-entropy human passwords expensive, but a
2^256 search space cannot be guessed at any speed, so stretching would only cost CPU on
every mint. The hash is still needed: a leaked database must not let anyone mint.

Pure functions: called from any worker thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

HASH_PREFIX = "sha256:"
DEVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Compared against when the device is unknown, so both paths cost the same.
_DUMMY_HASH = HASH_PREFIX + hashlib.sha256(b"pivoice-no-such-device").hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return HASH_PREFIX + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str, stored_hash: str | None) -> bool:
    """Constant-time check of `secret` against a stored hash; None (unknown device) is False."""
    candidate = hash_secret(secret)
    ok = hmac.compare_digest(candidate.encode("ascii"), (stored_hash or _DUMMY_HASH).encode("ascii"))
    return ok and stored_hash is not None


def check_device_name(name: str) -> str | None:
    """None if `name` is a valid device name, else the reason it is not."""
    if DEVICE_NAME_RE.match(name):
        return None
    return ("device names are 1-64 characters: letters, digits, '.', '_', '-', "
            "starting with a letter or digit")


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """(device id, secret) from an `Authorization: Basic ...` header, or None if absent/malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        return None
    return user, password
