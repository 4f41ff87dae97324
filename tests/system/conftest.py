"""Fixtures of the booted-systemd tests (defined in booted_pi.py, which the tests also import)."""

from booted_pi import booted, pi, timings  # noqa: F401  (module-scoped fixtures)
