"""Shared pytest setup: `support` importable, and one PulseAudio rig for the whole session."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from support.pulse import pulse_rig  # noqa: E402,F401  (session fixture used by audio and daemon tests)
