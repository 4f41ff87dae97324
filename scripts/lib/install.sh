# shellcheck shell=bash disable=SC2034
# Helpers for scripts/install: every step checks the current state first and changes only what
# differs, so a second identical run changes nothing. Each change prints one line; --dry-run prints
# what it would change and changes nothing.

PREFIX=/opt/pivoice
VENV_DIR=$PREFIX/.venv
SHARE_DIR=$PREFIX/share
BIN_LINK=/usr/local/bin/pivoice
ETC_DIR=/etc/pivoice
UNIT_DIR=/etc/systemd/system
UDEV_RULE=/etc/udev/rules.d/60-pivoice-gpio.rules
STAMP=$VENV_DIR/.pivoice-install
# Accounts this script created (so --purge removes those and nothing the OS had before).
ACCOUNTS_RECORD=$ETC_DIR/.install-accounts
LGPIO_SPEC='lgpio>=0.2.2.0'

CHANGES=0
DRY_RUN=${DRY_RUN:-0}

say() { printf 'pivoice install: %s\n' "$*"; }
die() { printf 'pivoice install: error: %s\n' "$*" >&2; exit 1; }

# change DESCRIPTION CMD...: run CMD as one counted change. In --dry-run only say it.
change() {
  local what=$1; shift
  CHANGES=$((CHANGES + 1))
  if [ "$DRY_RUN" = 1 ]; then say "would: $what"; return 0; fi
  "$@" || die "$what: failed"
  say "done: $what"
}

systemd_running() { [ -d /run/systemd/system ]; }

# install_file SRC DEST MODE OWNER GROUP: returns 0 if it changed DEST (content, mode or owner).
install_file() {
  local src=$1 dest=$2 mode=$3 owner=$4 group=$5
  if [ -f "$dest" ] && cmp -s "$src" "$dest" \
     && [ "$(stat -c '%a %U %G' "$dest")" = "${mode#0} $owner $group" ]; then
    return 1
  fi
  change "install $dest (mode $mode, $owner:$group)" install -m "$mode" -o "$owner" -g "$group" "$src" "$dest"
}

ensure_dir() {   # ensure_dir DIR MODE OWNER GROUP
  local dir=$1 mode=$2 owner=$3 group=$4
  [ -d "$dir" ] && [ "$(stat -c '%a %U %G' "$dir")" = "${mode#0} $owner $group" ] && return 0
  change "create directory $dir (mode $mode, $owner:$group)" install -d -m "$mode" -o "$owner" -g "$group" "$dir"
}

record_account() {   # record_account user|group NAME
  [ "$DRY_RUN" = 1 ] && return 0
  ensure_dir "$ETC_DIR" 0755 root root
  grep -qx "$1 $2" "$ACCOUNTS_RECORD" 2>/dev/null || echo "$1 $2" >> "$ACCOUNTS_RECORD"
}

ensure_group() {   # ensure_group NAME: a system group, created where the OS lacks it
  getent group "$1" >/dev/null && return 0
  change "create system group $1" groupadd --system "$1"
  record_account group "$1"
}

ensure_system_user() {   # ensure_system_user NAME [SUPPLEMENTARY,GROUPS]
  local name=$1 groups=${2:-} g
  if ! getent passwd "$name" >/dev/null; then
    change "create system user $name (no home, nologin${groups:+, groups $groups})" \
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ${groups:+--groups "$groups"} "$name"
    record_account user "$name"
    record_account group "$name"   # --user-group made it; it outlives userdel while an admin is in it
    return 0
  fi
  for g in ${groups//,/ }; do
    id -nG "$name" | tr ' ' '\n' | grep -qx "$g" || change "add user $name to group $g" usermod -aG "$g" "$name"
  done
}

ensure_member() {   # ensure_member USER GROUP
  [ "$DRY_RUN" = 1 ] && ! getent group "$2" >/dev/null && { change "add user $1 to group $2" true; return 0; }
  id -nG "$1" | tr ' ' '\n' | grep -qx "$2" && return 0
  change "add user $1 to group $2 (takes effect at their next login)" usermod -aG "$2" "$1"
}

missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || printf '%s ' "$pkg"
  done
}

apt_install() {   # apt output only on failure; waits for another apt (unattended-upgrades) to finish
  local log; log=$(mktemp)
  if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq \
         && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
            --no-install-recommends "$@"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2; rm -f "$log"
    die "apt-get could not install: $* (output above)"
  fi
  rm -f "$log"
}

ensure_packages() {
  local missing
  missing=$(missing_packages "$@")
  [ -z "$missing" ] && return 0
  # shellcheck disable=SC2086  # a list of package names
  change "install Debian packages: ${missing% }" apt_install $missing
}

check_python() {
  command -v python3 >/dev/null || return 0      # installed with the packages, checked again after
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "Python 3.11 or newer is needed (found $(python3 --version 2>&1 || echo 'an unusable python3'))"
}

# What identifies the installed package: the source files that go into it and the extras.
source_id() {
  (cd "$SRC" && find pyproject.toml README.md daemon -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
    -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

stamp_get() { sed -n "s/^$1=//p" "$STAMP" 2>/dev/null; }

ensure_venv() {
  local want have
  want=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  have=$("$VENV_DIR/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
  [ "$have" = "$want" ] && return 0
  if [ -n "$have" ] || [ -e "$VENV_DIR" ]; then
    change "recreate $VENV_DIR (Python ${have:-broken} -> $want)" \
      bash -c 'rm -rf "$1" && python3 -m venv "$1"' _ "$VENV_DIR"
  else
    change "create venv $VENV_DIR (Python $want)" bash -c 'install -d -m 0755 "$2" && python3 -m venv "$1"' \
      _ "$VENV_DIR" "$PREFIX"
  fi
  FORCE_PACKAGE=1
}

pip_install() {   # pip_install LOGDESC ARGS...: quiet pip, its output only on failure
  local log; log=$(mktemp)
  if ! "$VENV_DIR/bin/pip" install --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v 'is ignored: it is neither' "$log" | tail -n 30 >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
}

# Build from a temporary copy of the checkout, so no root-owned build/ or *.egg-info is left in it.
install_package() {   # install_package EXTRAS (comma-separated, may be empty)
  local extras=$1 tmp rc=0
  tmp=$(mktemp -d)
  (cd "$SRC" && tar -cf - --exclude='__pycache__' --exclude='*.pyc' --exclude='*.egg-info' \
     pyproject.toml README.md daemon) | tar -C "$tmp" -xf -
  pip_install --upgrade "$tmp${extras:+[$extras]}" || rc=$?
  rm -rf "$tmp"
  [ $rc = 0 ] || return $rc
  printf 'source=%s\nextras=%s\n' "$SOURCE_ID" "$extras" > "$STAMP"
}

ensure_package() {   # ensure_package NEEDED_EXTRAS
  local need=$1 have_src have_extras extras
  SOURCE_ID=$(source_id)
  have_src=$(stamp_get source); have_extras=$(stamp_get extras)
  # extras only grow: the device and the token backend can share one host and one venv
  extras=$(printf '%s\n' ${have_extras//,/ } ${need//,/ } | sort -u | paste -sd, -)
  if [ "${FORCE_PACKAGE:-0}" = 0 ] && [ "$have_src" = "$SOURCE_ID" ] && [ "$have_extras" = "$extras" ]; then
    return 1
  fi
  change "install pivoice${extras:+[$extras]} from $SRC into $VENV_DIR" install_package "$extras"
}

lgpio_works() {   # in a scratch dir: importing lgpio makes a FIFO in the working directory
  local dir ok=0
  [ -x "$VENV_DIR/bin/python" ] || return 1
  dir=$(mktemp -d)
  (cd "$dir" && LG_WD="$dir" "$VENV_DIR/bin/python" -c 'import lgpio; lgpio.gpiochip_open' >/dev/null 2>&1) || ok=1
  rm -rf "$dir"
  return $ok
}

# gpiozero's pin factory on a Pi is lgpio. PyPI has wheels for cp311/cp312 (aarch64, x86_64);
# elsewhere (Python 3.13 on Pi OS trixie) build the sdist statically (PYPI=1) with swig.
ensure_lgpio() {
  lgpio_works && return 1
  if [ "$DRY_RUN" = 1 ]; then change "install $LGPIO_SPEC into $VENV_DIR" true; return 0; fi
  if pip_install --only-binary lgpio "$LGPIO_SPEC" 2>/dev/null; then
    CHANGES=$((CHANGES + 1)); say "done: install the $LGPIO_SPEC wheel into $VENV_DIR"
  else
    ensure_packages swig gcc python3-dev
    change "build $LGPIO_SPEC from source into $VENV_DIR (PyPI has no wheel for this Python)" \
      env PYPI=1 "$VENV_DIR/bin/pip" install -q --disable-pip-version-check --no-binary lgpio "$LGPIO_SPEC"
  fi
  lgpio_works && return 0
  [ "$ARCH" = arm64 ] && die "lgpio does not import in $VENV_DIR: the GPIO button could not work"
  say "warning: lgpio is not usable in $VENV_DIR (fine off a Pi, where the button needs pin_factory: mock)"
}

ensure_symlink() {   # ensure_symlink TARGET LINK
  [ "$(readlink "$2" 2>/dev/null)" = "$1" ] && return 0
  change "link $2 -> $1" ln -sfn "$1" "$2"
}

ensure_share() {   # README and example configs, where the units' Documentation= points
  ensure_dir "$SHARE_DIR" 0755 root root
  install_file "$SRC/README.md" "$SHARE_DIR/README.md" 0644 root root || true
  install_file "$SRC/config/pivoice.example.yaml" "$SHARE_DIR/pivoice.example.yaml" 0644 root root || true
  install_file "$SRC/config/token-server.example.yaml" "$SHARE_DIR/token-server.example.yaml" 0644 root root || true
}

# install_secret SOURCE DEST: SOURCE is a file or "-" for stdin. The value never reaches argv or output.
install_secret() {
  local src=$1 dest=$2 value tmp
  if [ "$src" = - ] && [ -t 0 ]; then   # typed or pasted: not shown on the screen
    printf 'pivoice install: paste the %s for %s (not shown), then Enter: ' "${SECRET_WHAT:-secret}" "$dest" >&2
    IFS= read -r -s value || true; printf '\n' >&2
  elif [ "$src" = - ]; then value=$(cat)
  else value=$(cat -- "$src") || die "cannot read $src"; fi
  value=${value%$'\n'}
  [ -n "$value" ] || die "the secret for $dest is empty"
  case $value in *[[:space:]]*) die "the secret for $dest contains whitespace or several lines";; esac
  tmp=$(umask 077 && mktemp)
  printf '%s\n' "$value" > "$tmp"
  install_file "$tmp" "$dest" 0600 root root && SECRET_CHANGED=1
  rm -f "$tmp"
  return 0
}

install_unit() {   # install_unit NAME: returns 0 if the unit file changed
  install_file "$SRC/systemd/$1" "$UNIT_DIR/$1" 0644 root root || return 1
  if systemd_running && [ "$DRY_RUN" = 0 ]; then systemctl daemon-reload; fi
  return 0
}

ensure_enabled() {
  systemctl is-enabled --quiet "$1" 2>/dev/null && return 0
  change "enable $1" systemctl enable --quiet "$1"
}

# ensure_running UNIT RESTART(0|1): start it if not active, restart it if RESTART=1.
ensure_running() {
  local unit=$1 restart=$2
  if [ "${NO_START:-0}" = 1 ]; then return 0; fi
  if ! systemd_running; then say "systemd is not running here: $unit installed and enabled, not started"; return 0; fi
  if systemctl is-active --quiet "$unit"; then
    [ "$restart" = 1 ] || return 0
    change "restart $unit (new package, unit or secret)" systemctl restart "$unit"
  else
    change "start $unit" systemctl start "$unit"
  fi
  [ "$DRY_RUN" = 1 ] || systemctl is-active --quiet "$unit" || {
    journalctl -u "$unit" -n 20 --no-pager -o cat >&2 || true
    die "$unit did not stay active (journal above; also: pivoice doctor)"; }
}
