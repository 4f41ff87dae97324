"""`pivoice dev-server`: an offline stand-in for the OpenAI Realtime API (GA protocol only).

Endpoints (loopback by default):
* `POST /v1/realtime/client_secrets` - mints `ek_` keys with the local fake API key
  (`sk-dev-local`, or --api-key / $PIVOICE_DEV_API_KEY; it guards nothing real).
* `GET /v1/realtime[?model=...]` WebSocket - `ek_` key or the API key as Bearer token.
* `POST /_dev/faults` - DEV ONLY: `{"client_secrets": {"status": 503, "count": 3, "delay_s": 0}}`
  makes the next client_secrets calls fail or stall, for the token backend's fault tests.

Approximations (there is no model and no ASR here):
* Replies are fixed text spoken by espeak-ng (or the user's own audio, or a tone).
* Transcription sessions (`session.type: transcription`) get NO real ASR: every committed turn is
  "transcribed" as the fixed --transcript text ({seconds} = the turn's length) through
  `conversation.item.input_audio_transcription.delta/.completed`; pure silence gives `.failed`.
  In realtime sessions input transcription config is accepted and echoed, but no transcription
  events are sent (see transcription.py).
* server_vad uses webrtcvad + an energy floor; semantic_vad is approximated (see vad.py).
* Token counts in `usage` and `rate_limits.updated` are rough estimates.
* Tool calls happen only when `--script` says so (script.py, scriptflow.py, tools.py). MCP is
  modelled without network: tool lists, outputs and errors come from the script and no MCP
  `server_url` is ever contacted. After an MCP approval answer the server starts the next
  response itself (agents-js sends no response.create then); that is inferred, not observed.
* Error codes for unknown item ids (`item_not_found`) and WebRTC-only events are not
  confirmed against the live API; the codes named in the protocol reference are exact, and so is
  `invalid_tool_call_id` for a function_call_output whose call_id is unknown (livekit/agents#3344).

Module map: cli (arguments, uvicorn), app (routes/state), httpapi, wsapi, session (+items,
inputbuffer), response (+tools), script, scriptflow, sessionconfig, transcription, vad, voice,
validation, secrets, faults, eventlog, events.
"""
