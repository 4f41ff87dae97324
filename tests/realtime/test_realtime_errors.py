"""One rule for what needs an operator."""

from pivoice import errors
from pivoice.tokens import provider


def test_the_token_provider_and_the_rule_agree():
    assert provider.OPERATOR_CODES <= errors.OPERATOR_CODES
    assert errors.needs_operator("tls_error") and not errors.retryable("tls_error")


def test_transient_codes_are_retryable():
    for code in ("backend_unreachable", "backend_timeout", "rate_limited", "internal_error", "bad_response"):
        assert errors.retryable(code) and not errors.needs_operator(code)
