"""Check 5: the token backend. TLS, auth and a real mint with the device secret, through the same
transport and wire code as the daemon, then the clock skew against the response's `server_time`.

Main thread.
"""

from __future__ import annotations

import json
import time
from typing import Callable

from pivoice.doctor.report import FAIL, OK, WARN, Context, Result

SKEW_WARN_S = 30.0
SKEW_FAIL_S = 300.0
NTP_REMEDY = "turn on time sync: `sudo timedatectl set-ntp true`, then check `timedatectl` (System clock synchronized)"


def _remedy(code: str, status: int | None, device_id: str, backend_url: str) -> str:
    if code == "tls_error":
        return ("set tokens.ca_bundle to the PEM of the CA that signed the backend's certificate, and make sure "
                f"the certificate names the host in tokens.backend_url ({backend_url}); a wrong clock also breaks TLS")
    if code in ("backend_unreachable", "backend_timeout"):
        return (f"wrong tokens.backend_url ({backend_url})? Is the backend running there "
                "(`systemctl status pivoice-token-server` on its host) and reachable from this network?")
    if status == 401:
        return (f"device unknown or revoked: run `pivoice token-server devices rotate {device_id}` on the backend "
                "and install the new secret (tokens.secret_file, normally /etc/pivoice/device-secret)")
    if status == 403:
        return (f"the backend's policy forbids part of this device's session: remove that field from session: in "
                f"the config, or allow it with `pivoice token-server devices policy {device_id}` on the backend")
    if status == 429:
        return "rate limit or daily budget reached: wait (Retry-After), or raise limits: in the backend's config"
    if status is not None and status >= 500:
        return "the backend or the OpenAI API behind it failed: read `journalctl -u pivoice-token-server` on the backend"
    return "read the backend's log (`journalctl -u pivoice-token-server`) for this request"


class BackendCheck:
    """`transport` is a pivoice.tokens.HttpTransport (default: the daemon's UrllibTransport with
    tokens.ca_bundle); `wall_clock` is compared with the backend's `server_time`."""

    name = "backend"

    def __init__(self, *, transport=None, wall_clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._transport = transport
        self._wall_clock = wall_clock
        self._monotonic = monotonic

    def run(self, ctx: Context) -> Result:
        from pivoice.tokens import TokenError, UrllibTransport
        from pivoice.tokens.provider import ENDPOINT_PATH
        from pivoice.tokens.transport import host_label
        from pivoice.tokens.wire import parse_mint_response, request_headers
        t = ctx.cfg.tokens
        url = t.backend_url + ENDPOINT_PATH
        where = f"backend {host_label(url)}"
        tls = "https (certificate and host name verified)" if url.startswith("https:") else "plain http (loopback)"
        data = {"url": url, "device_id": t.device_id}
        body = json.dumps({"session": ctx.cfg.session.payload()}).encode()
        headers = request_headers(t.device_id, ctx.secret)
        try:
            transport = self._transport or UrllibTransport(t.ca_bundle)
        except ValueError as exc:   # the CA bundle vanished or broke since the config check
            return Result(self.name, FAIL, f"tokens.ca_bundle: {exc}", "point tokens.ca_bundle at a PEM file", data)
        sent_wall_s, sent_mono_s = self._wall_clock(), self._monotonic()
        try:
            response = transport.post_json(url, headers, body, t.timeout_s)
            rtt_s = self._monotonic() - sent_mono_s
            key = parse_mint_response(response, sent_mono_s=sent_mono_s, where=where, device_id=t.device_id,
                                      secret=ctx.secret)
        except TokenError as exc:
            data.update(code=exc.code, http_status=exc.http_status)
            return Result(self.name, FAIL, exc.message, _remedy(exc.code, exc.http_status, t.device_id, t.backend_url),
                          data)
        ctx.key = key
        data.update(http_status=response.status, rtt_ms=round(1000 * rtt_s, 1), tls=tls,
                    key_lifetime_s=round(key.expires_at_mono_s - sent_mono_s, 1))
        found = (f"{where} over {tls}: device {t.device_id!r} authenticated, key minted in {1000 * rtt_s:.0f} ms, "
                 f"valid {data['key_lifetime_s']:g} s")
        skew_s = self._skew_s(response.body, sent_wall_s, rtt_s)
        if skew_s is None:
            data["clock_skew_s"] = None
            return Result(self.name, WARN, f"{found}; the backend sent no server_time, clock skew not checked",
                          "upgrade the token backend (its mint response carries server_time)", data)
        data["clock_skew_s"] = round(skew_s, 2)
        skew = f"this clock is {abs(skew_s):.0f} s {'ahead of' if skew_s > 0 else 'behind'} the backend's"
        why = ("keys still work, their lifetime is anchored on the monotonic clock, but TLS certificate "
               "checks (not-before/not-after) use the wall clock")
        if abs(skew_s) > SKEW_FAIL_S:
            return Result(self.name, FAIL, f"{found}; clock skew: {skew} (over {SKEW_FAIL_S:g} s; {why})",
                          NTP_REMEDY, data)
        if abs(skew_s) > SKEW_WARN_S:
            return Result(self.name, WARN, f"{found}; clock skew: {skew} (over {SKEW_WARN_S:g} s; {why})",
                          NTP_REMEDY, data)
        return Result(self.name, OK, f"{found}; clock within {abs(skew_s):.1f} s of the backend's", data=data)

    @staticmethod
    def _skew_s(body: bytes, sent_wall_s: float, rtt_s: float) -> float | None:
        """Local minus server wall clock, the server's stamp taken as mid-round-trip."""
        try:
            server_time = json.loads(body).get("server_time")
        except (ValueError, AttributeError):
            return None
        if isinstance(server_time, bool) or not isinstance(server_time, (int, float)):
            return None
        return sent_wall_s + rtt_s / 2 - float(server_time)
