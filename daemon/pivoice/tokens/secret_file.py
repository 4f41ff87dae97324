"""The device secret file, re-read when it changed: how `devices rotate` reaches a running daemon.

The backend answers 401 once the device's secret has been rotated. The provider then asks
`changed()` before its next attempt; that costs one stat() when nothing changed, and a read only
when the file's identity or timestamps moved (a new file renamed into place, an editor's save,
`install -m 600`). A file rewritten with the same secret does not count as a rotation.

Thread: built on the main thread, then used by the token refresh thread only.
"""

from __future__ import annotations

import os
from pathlib import Path

from pivoice.tokens.keys import Secret, read_secret_file

Stamp = tuple[int, int, int, int, int]


class SecretFile:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._stamp = self._stat()   # before the read: a change in between is seen next time
        self.secret = read_secret_file(self.path)

    def changed(self) -> Secret | None:
        """The new secret if the file now holds a different one, else None. SecretFileError if the
        file changed but cannot be used (half-written, removed): the caller keeps the old secret,
        and the next call tries again."""
        stamp = self._stat()
        if stamp is not None and stamp == self._stamp:
            return None
        secret = read_secret_file(self.path)
        self._stamp = stamp
        if secret == self.secret:   # constant-time compare (Secret.__eq__)
            return None
        self.secret = secret
        return secret

    def _stat(self) -> Stamp | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
