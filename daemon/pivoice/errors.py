"""One rule for failure codes: which need an operator and which may pass on their own.

Token errors (`tokens.TokenError.code`) and the daemon's own config errors share
one vocabulary of short codes. Until this module, two lists disagreed (the token
provider counted `tls_error`, `forbidden` and `invalid_request` as needing an
operator; the runtime's retry rule did not). Both should read `needs_operator`.

Pure functions; any thread.
"""

from __future__ import annotations

# Retrying as is cannot help: a wrong or revoked secret, a policy refusal, a request the backend
# rejects, a certificate we do not trust, a config the daemon cannot use. Everything else (backend
# unreachable or slow, 429, 5xx, a bad response) may pass on its own.
OPERATOR_CODES = frozenset({"unauthorized", "forbidden", "forbidden_override", "invalid_request", "tls_error",
                            "bad_config"})


def needs_operator(code: str) -> bool:
    return code in OPERATOR_CODES


def retryable(code: str) -> bool:
    """Worth asking again within the same press (the controller retries until connect_timeout_s)."""
    return not needs_operator(code)
