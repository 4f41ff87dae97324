"""`pivoice dev-server`: an offline stand-in for the OpenAI Realtime API (GA protocol only).

Endpoints (loopback by default):
* `POST /v1/realtime/client_secrets` - mints `ek_` keys with the local fake API key
  (`sk-dev-local`, or --api-key / $PIVOICE_DEV_API_KEY; it guards nothing real).
* `GET /v1/realtime[?model=...]` WebSocket - `ek_` key or the API key as Bearer token.
* `POST /_dev/faults` - DEV ONLY: `{"client_secrets": {"status": 503, "count": 3, "delay_s": 0}}`
  makes the next client_secrets calls fail or stall, for the token backend's fault tests.

Approximations (there is no model and no ASR here):
* Replies are fixed text spoken by espeak-ng (or the user's own audio, or a tone).
* Input transcription config is accepted and echoed, but no transcription events are sent.
* server_vad uses webrtcvad + an energy floor; semantic_vad is approximated (see vad.py).
* Token counts in `usage` and `rate_limits.updated` are rough estimates.
* Error codes for unknown item ids (`item_not_found`) and WebRTC-only events are not
  confirmed against the live API; the codes named in the protocol reference are exact.

Module map: cli (arguments, uvicorn), app (routes/state), httpapi, wsapi, session (+items,
inputbuffer), response, sessionconfig, vad, voice, validation, secrets, faults, eventlog, events.
"""
