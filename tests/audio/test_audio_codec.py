import numpy as np
import pytest

from pivoice.audio import codec


def enc(fmt, values):
    return codec.encode(fmt, np.array(values, dtype="<i2").tobytes())


def dec(fmt, payload):
    return np.frombuffer(codec.decode(fmt, payload), dtype="<i2").tolist()


@pytest.mark.parametrize("fmt,values,code_words", [
    # G.711 reference coder values (Sun g711.c): silence, full scale, and a mid-level sample
    (codec.PCMU, [0, -1, 32767, -32768, 1000, -1000], [0xFF, 0x7E, 0x80, 0x00, 0xCE, 0x4E]),
    (codec.PCMA, [0, -1, 32767, -32768, 1000, -1000], [0xD5, 0x55, 0xAA, 0x2A, 0xFA, 0x7A]),
])
def test_known_code_words(fmt, values, code_words):
    assert list(enc(fmt, values)) == code_words


def test_known_decoded_values():
    assert dec(codec.PCMU, bytes([0xFF, 0x80, 0x00, 0x7F])) == [0, 32124, -32124, 0]
    assert dec(codec.PCMA, bytes([0xD5, 0xAA, 0x2A, 0x55])) == [8, 32256, -32256, -8]


@pytest.mark.parametrize("fmt,full_scale", [(codec.PCMU, 32124), (codec.PCMA, 32256)])
def test_round_trip_error_is_within_the_companding_step(fmt, full_scale):
    x = np.arange(-32768, 32768).astype(np.int16)
    y = np.frombuffer(codec.decode(fmt, codec.encode(fmt, x.tobytes())), dtype="<i2").astype(int)
    xi = x.astype(int)
    inside = np.abs(xi) <= full_scale
    # 8-bit log coding: error below half a step, and steps grow with the magnitude (1/16 of it at most)
    assert np.all(np.abs(y - xi)[inside] <= np.abs(xi[inside]) / 32 + 8)
    assert np.all(np.abs(y[~inside]) == full_scale)  # beyond the top segment it saturates
    # every code word decodes to a value that re-encodes to itself (idempotent after one pass)
    again = np.frombuffer(codec.decode(fmt, codec.encode(fmt, y.astype("<i2").tobytes())), dtype="<i2")
    assert np.array_equal(again.astype(int), y)


def test_lengths_and_rates():
    pcm = np.zeros(240, dtype="<i2").tobytes()
    assert len(codec.encode(codec.PCMU, pcm)) == 240
    assert codec.encode(codec.PCM, pcm) == pcm
    assert codec.wire_rate_hz(codec.PCM) == 24000 and codec.wire_rate_hz(codec.PCMA) == 8000
    assert codec.bytes_per_ms(codec.PCM) == 48 and codec.bytes_per_ms(codec.PCMU) == 8
    with pytest.raises(ValueError, match="odd length"):
        codec.decode(codec.PCM, b"\x00\x01\x02")
