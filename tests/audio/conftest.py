import pytest

from support.fixtures_audio import make_speech_wav

SPEECH_TEXT = "Hello, what is the weather like today in Berlin?"
SPEECH_LEAD_S = 1.0


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory):
    """16 kHz mono speech: 1.0 s of silence, ~2.8 s of speech, 1.5 s of silence."""
    return make_speech_wav(tmp_path_factory.mktemp("speech") / "speech16k.wav", SPEECH_TEXT,
                           rate_hz=16000, lead_silence_s=SPEECH_LEAD_S, tail_silence_s=1.5)
