"""The daemon's side of the token backend: ephemeral keys fetched, cached and refreshed ahead of expiry.

`provider` schedules fetches on its own thread; `transport` is the HTTPS edge
(stdlib urllib, injectable); `wire` turns backend responses into keys or
errors; `keys` holds the value types that keep secrets out of logs;
`secret_file` re-reads the device secret after a 401 (rotation).
"""

from pivoice.tokens.keys import EphemeralKey, Secret, SecretFileError, TokenError, read_secret_file
from pivoice.tokens.provider import TokenProvider
from pivoice.tokens.secret_file import SecretFile
from pivoice.tokens.transport import HttpResponse, HttpTransport, UrllibTransport

__all__ = ["EphemeralKey", "HttpResponse", "HttpTransport", "Secret", "SecretFile", "SecretFileError", "TokenError",
           "TokenProvider", "UrllibTransport", "read_secret_file"]
