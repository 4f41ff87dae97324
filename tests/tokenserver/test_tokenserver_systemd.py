"""The token backend's unit hands the API key over as a credential (verify/exposure: tests/test_systemd_units.py)."""

from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "pivoice-token-server.service"


def test_unit_hands_over_the_api_key_as_a_credential():
    text = UNIT.read_text()
    assert "LoadCredential=openai-api-key:/etc/pivoice/openai-api-key" in text
    assert "Environment=OPENAI_API_KEY" not in text  # never put the key in the unit
    example = (UNIT.parents[1] / "config" / "token-server.example.yaml").read_text()
    assert "/run/credentials/pivoice-token-server.service/openai-api-key" in example
