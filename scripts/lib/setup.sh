# Shared by scripts/demo, scripts/test and scripts/bench: install what is missing, idempotently.
# Debian / Ubuntu / Raspberry Pi OS. Needs root (or sudo) only when a Debian package is missing.

PIVOICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$PIVOICE_ROOT/.venv"

# What the daemon and the demo need at run time (PortAudio headers build PyAudio; espeak-ng and
# sox make the spoken fixtures and the dev server's voice).
DEMO_PACKAGES=(portaudio19-dev gcc espeak-ng sox alsa-utils)
# What the tests add: real PulseAudio virtual devices, a throwaway PostgreSQL, systemd-analyze, and
# for the booted-systemd test (tests/system) a Debian rootfs booted under systemd-nspawn; headless
# chromium renders the token backend's fleet page (tests/tokenserver/test_tokenserver_fleet_page.py).
TEST_PACKAGES=(pulseaudio pulseaudio-utils libasound2-plugins postgresql systemd systemd-container debootstrap mosquitto chromium)

say() { printf '\033[1m[pivoice]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root to run: $*"; return 1; fi
}

install_debian_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' \
    2>/dev/null || missing+=(python3-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local stamp="$VENV/.pivoice-installed"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    say "Python 3.11 or newer is needed (found $(python3 --version 2>&1))"; return 1; }
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if [ ! -f "$stamp" ] || [ "$PIVOICE_ROOT/pyproject.toml" -nt "$stamp" ]; then
    say "installing pivoice and its Python dependencies into .venv"
    # (this machine's pip config names local indexes that may be absent: drop those warnings)
    "$VENV/bin/pip" install -q --upgrade pip 2>&1 >/dev/null | grep -v "is ignored: it is neither" >&2 || true
    "$VENV/bin/pip" install -q -e "$PIVOICE_ROOT[dev]" 2> >(grep -v "is ignored: it is neither" >&2)
    touch "$stamp"
  fi
}
