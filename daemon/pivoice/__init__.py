"""pivoice: a voice-assistant daemon for the Raspberry Pi on the OpenAI Realtime API."""

__version__ = "0.1.0"
