"""Files that hold a secret the config names: the device secret, a tool's bearer token, the webhook's
token, the MQTT password.

A path may start with ${CREDENTIALS_DIRECTORY} (a systemd credential, `LoadCredential=` in the unit),
or a key names the credential alone. Callers read the file when they use the secret (each connect,
each call), so a rotated file needs no restart. Errors say what is wrong with the file, never what it
holds; callers prefix the config key. Any thread.
"""

from __future__ import annotations

import os
from typing import Mapping

CREDENTIALS_VAR = "${CREDENTIALS_DIRECTORY}"
MAX_SECRET_BYTES = 16384


class CredentialError(ValueError):
    """The file cannot give a secret; the message names the file and the reason."""


def expand(path: str, key: str, environ: Mapping[str, str] = os.environ) -> str:
    """`path` with ${CREDENTIALS_DIRECTORY} filled in from the environment systemd gives the unit."""
    if CREDENTIALS_VAR not in path:
        return path
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise CredentialError(f"{key}: $CREDENTIALS_DIRECTORY is not set (is the credential loaded by the unit?)")
    return path.replace(CREDENTIALS_VAR, directory)


def secret_path(file: str | None, file_key: str, credential: str | None, credential_key: str,
                environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(the key that named it, the path) of a secret given as a file or as a credential name; None: neither."""
    if credential is not None:
        return credential_key, expand(f"{CREDENTIALS_VAR}/{credential}", credential_key, environ)
    if file is not None:
        return file_key, expand(file, file_key, environ)
    return None


def read_one_line(path: str | os.PathLike, max_bytes: int = MAX_SECRET_BYTES) -> str:
    """The secret a file holds: one line, surrounding whitespace stripped."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except PermissionError:
        raise CredentialError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CredentialError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > max_bytes:
        raise CredentialError(f"{path}: too large (over {max_bytes} bytes) to be a secret")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialError(f"{path}: is not UTF-8 text") from None
    if not text:
        raise CredentialError(f"{path}: is empty")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise CredentialError(f"{path}: must hold a single line without control characters")
    return text
