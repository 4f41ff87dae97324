"""Test certificates made by openssl: a CA and a server certificate for 127.0.0.1, and a CA directory
laid out the way update-ca-certificates keeps /etc/ssl/certs (the system's CAs plus ours, one
`<subject hash>.N` link each), for a process that should trust our CA the way a Pi trusts its own.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_CA_DIR = Path("/etc/ssl/certs")


@dataclass
class Tls:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls(work: Path) -> Tls:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it (openssl, ~0.2 s)."""
    work.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (work / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = work / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")

    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=pivoice test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return Tls(ca, cert, key)


def trust_dir(work: Path, ca_file: Path) -> Path:
    """A hashed CA directory (for SSL_CERT_DIR): every entry of /etc/ssl/certs, and `ca_file` under its
    subject hash. OpenSSL reads a CA from it only when a handshake needs it."""
    directory = work / "ca-dir"
    directory.mkdir(parents=True, exist_ok=True)
    for entry in SYSTEM_CA_DIR.iterdir():
        link = directory / entry.name
        if not link.exists():
            link.symlink_to(entry)
    subject_hash = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)], check=True,
                                  capture_output=True, text=True, timeout=30).stdout.strip()
    index = 0
    while (directory / f"{subject_hash}.{index}").exists():
        index += 1
    (directory / f"{subject_hash}.{index}").symlink_to(ca_file.resolve())
    return directory
