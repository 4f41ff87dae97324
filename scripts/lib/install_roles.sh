# shellcheck shell=bash disable=SC2034
# The two roles of scripts/install (the device, the token backend host) and their uninstall.
# Sourced after install.sh; uses the variables scripts/install sets from its options.

DEVICE_UNIT=pivoice.service
DEVICE_CACHE=/var/cache/pivoice   # the unit's CacheDirectory: derived bytecode, removed with the unit
TOKEN_UNIT=pivoice-token-server.service
DEVICE_CONFIG=$ETC_DIR/pivoice.yaml
DEVICE_SECRET=$ETC_DIR/device-secret
TOKEN_CONFIG=$ETC_DIR/token-server.yaml
TOKEN_KEY=$ETC_DIR/openai-api-key
TOKEN_STATE=/var/lib/pivoice-token-server
TOKEN_CREDENTIAL=/run/credentials/$TOKEN_UNIT/openai-api-key

# PyAudio compiles against PortAudio; both roles install the same package (the backend adds [server]).
BUILD_PACKAGES=(python3 python3-venv python3-dev gcc portaudio19-dev ca-certificates)

install_config() {   # install_config SRC DEST GROUP: never replaces an existing file
  local src=$1 dest=$2 group=$3
  if [ -e "$dest" ]; then
    say "kept $dest (never overwritten; edit it, then: systemctl reload or restart the unit)"
    if [ "$DRY_RUN" = 0 ] && ! runuser -u "$4" -- test -r "$dest" 2>/dev/null; then
      change "make $dest readable by group $group" bash -c 'chgrp "$1" "$2" && chmod g+r "$2"' _ "$group" "$dest"
    fi
    return 0
  fi
  install_file "$src" "$dest" 0640 root "$group" || true
}

device_install() {
  local restart=${UPGRADE:-0} config_src=${CONFIG:-$SRC/config/pivoice.example.yaml}
  ensure_packages "${BUILD_PACKAGES[@]}" alsa-utils
  check_python
  ensure_group gpio
  ensure_group audio
  ensure_system_user pivoice audio,gpio
  if [ -n "$ADMIN" ]; then ensure_member "$ADMIN" pivoice; fi
  if install_file "$SRC/systemd/60-pivoice-gpio.rules" "$UDEV_RULE" 0644 root root \
     && [ "$DRY_RUN" = 0 ] && [ -S /run/udev/control ]; then
    udevadm control --reload && udevadm trigger --subsystem-match=gpio --action=change || true
  fi
  ensure_venv
  if ensure_package ""; then restart=1; PACKAGE_CHANGED=1; fi
  if ensure_lgpio; then restart=1; fi
  ensure_symlink "$VENV_DIR/bin/pivoice" "$BIN_LINK"
  ensure_share
  ensure_dir "$ETC_DIR" 0755 root root
  install_config "$config_src" "$DEVICE_CONFIG" pivoice pivoice
  SECRET_CHANGED=0
  [ -n "$SECRET_SRC" ] && SECRET_WHAT="device secret" install_secret "$SECRET_SRC" "$DEVICE_SECRET"
  [ "$SECRET_CHANGED" = 1 ] && restart=1
  if install_unit "$DEVICE_UNIT"; then restart=1; fi
  warm_bytecode
  check_device_config
  ensure_enabled "$DEVICE_UNIT"
  ensure_running "$DEVICE_UNIT" "$restart"
  restart_if_active "$TOKEN_UNIT"
}

# The unit runs Python with -OO and its bytecode in its CacheDirectory (/usr and /opt are read-only
# there): compile what the daemon imports now (pivoice/warm.py), as its user, so the first start is not
# also a compile (52-54 MiB peak RSS instead of 47, and seconds of CPU on a Pi Zero). Again after each
# package change.
warm_bytecode() {
  local env_args cache
  env_args=$(sed -n 's/^Environment=//p' "$SRC/systemd/$DEVICE_UNIT" | tr ' ' '\n' | grep '^PYTHON' || true)
  cache=$(sed -n 's/^PYTHONPYCACHEPREFIX=//p' <<< "$env_args")
  [ -n "$cache" ] || return 0
  if [ "${PACKAGE_CHANGED:-0}" = 0 ] && [ -n "$(find "$cache" -name '*.pyc' -print -quit 2>/dev/null)" ]; then
    return 0
  fi
  ensure_dir "$(dirname "$cache")" 0750 pivoice pivoice
  ensure_dir "$cache" 0750 pivoice pivoice
  # shellcheck disable=SC2086  # NAME=VALUE words, none with spaces
  change "compile the daemon's bytecode into $cache" \
    bash -c 'cd "$1" && shift && runuser -u pivoice -- env "$@" -m pivoice.warm >/dev/null' _ "$cache" \
    $env_args "$VENV_DIR/bin/python"
}

check_device_config() {
  local out err line
  [ -x "$VENV_DIR/bin/pivoice" ] && [ -f "$DEVICE_CONFIG" ] && [ -f "$UNIT_DIR/$DEVICE_UNIT" ] || return 0
  err=$(mktemp)
  out=$("$VENV_DIR/bin/pivoice" check-config "$DEVICE_CONFIG" --unit-file "$UNIT_DIR/$DEVICE_UNIT" 2>"$err") \
    || { cat "$err" >&2; printf '%s\n' "$out" >&2; rm -f "$err"
         die "pivoice check-config $DEVICE_CONFIG failed (above): not starting"; }
  while IFS= read -r line; do say "check-config: $line"; done <<< "$out"
  while IFS= read -r line; do say "check-config: warning: $line"; done < "$err"
  rm -f "$err"
  if grep -Eq '^[[:space:]]*device:[[:space:]]*["'\'']?wav:' "$DEVICE_CONFIG"; then
    say "note: under the unit a wav: output must be under /run/pivoice and a wav: input outside /home," \
        "/root and /tmp (hidden or private there), or add a ReadWritePaths= drop-in (README)"
  fi
}

token_config_from() {   # the example (or --config), with the API key read from the unit's credential
  local src=$1 out=$2
  if grep -q '^api_key_file:' "$src"; then
    sed "s#^api_key_file:[[:space:]]*null[[:space:]]*\$#api_key_file: $TOKEN_CREDENTIAL#" "$src" > "$out"
  else
    { cat "$src"; printf '\napi_key_file: %s\n' "$TOKEN_CREDENTIAL"; } > "$out"
  fi
}

token_install() {
  local restart=${UPGRADE:-0} tmp
  ensure_packages "${BUILD_PACKAGES[@]}"
  check_python
  ensure_system_user pivoice-token
  ensure_venv
  if ensure_package server; then restart=1; PACKAGE_CHANGED=1; fi
  ensure_symlink "$VENV_DIR/bin/pivoice" "$BIN_LINK"
  ensure_share
  ensure_dir "$ETC_DIR" 0755 root root
  if [ ! -e "$TOKEN_CONFIG" ]; then
    tmp=$(mktemp); token_config_from "${CONFIG:-$SRC/config/token-server.example.yaml}" "$tmp"
    install_file "$tmp" "$TOKEN_CONFIG" 0640 root pivoice-token || true
    rm -f "$tmp"
  else
    install_config /dev/null "$TOKEN_CONFIG" pivoice-token pivoice-token
  fi
  SECRET_CHANGED=0
  [ -n "$KEY_SRC" ] && SECRET_WHAT="OpenAI API key" install_secret "$KEY_SRC" "$TOKEN_KEY"
  [ "$SECRET_CHANGED" = 1 ] && restart=1
  # the unit's StateDirectory, made now so `devices add` works before the first start
  getent passwd pivoice-token >/dev/null && ensure_dir "$TOKEN_STATE" 0700 pivoice-token pivoice-token
  if install_unit "$TOKEN_UNIT"; then restart=1; fi
  check_token_config
  ensure_enabled "$TOKEN_UNIT"
  ensure_running "$TOKEN_UNIT" "$restart"
  restart_if_active "$DEVICE_UNIT"
}

restart_if_active() {   # the other role's unit on this host runs from the same venv
  [ "${PACKAGE_CHANGED:-0}" = 1 ] && [ "$NO_START" = 0 ] || return 0
  systemd_running && systemctl is-active --quiet "$1" || return 0
  change "restart $1 (it runs from the same venv)" systemctl restart "$1"
}

check_token_config() {   # as the unit will see it: the credential path read from its source file
  local tmp out rc=0
  [ -x "$VENV_DIR/bin/pivoice" ] && [ -f "$TOKEN_CONFIG" ] && [ -f "$TOKEN_KEY" ] || return 0
  tmp=$(umask 077 && mktemp --suffix=.yaml)
  sed "s#$TOKEN_CREDENTIAL#$TOKEN_KEY#" "$TOKEN_CONFIG" > "$tmp"
  out=$("$VENV_DIR/bin/pivoice" token-server check-config --config "$tmp" 2>&1) || rc=$?
  rm -f "$tmp"
  out=${out//$tmp/$TOKEN_CONFIG}
  [ $rc = 0 ] || { printf '%s\n' "$out" >&2; die "pivoice token-server check-config failed (above): not starting"; }
  say "check-config: ${out%%$'\n'*}"
}

device_summary() {
  systemd_running || return 0
  say "status: $DEVICE_UNIT $(systemctl is-active "$DEVICE_UNIT" 2>/dev/null || true)"
  [ "${NO_START:-0}" = 1 ] && return 0
  "$VENV_DIR/bin/pivoice" ctl status 2>/dev/null | "$VENV_DIR/bin/python" -c '
import json, sys
try:
    status = json.loads(sys.stdin.read())
except ValueError:
    sys.exit("pivoice install: status: `pivoice ctl status` did not answer")
token = status.get("token") or {}
print("pivoice install: status: ctl status: state %s, token %s%s" % (
    status.get("state"), token.get("state"), "" if not token.get("last_error") else " (%s)" % token["last_error"]))
' || true
  if [ -n "$ADMIN" ]; then say "status: $ADMIN can run \`pivoice ctl status\` without sudo (group pivoice)"; fi
}

token_summary() {
  systemd_running && say "status: $TOKEN_UNIT $(systemctl is-active "$TOKEN_UNIT" 2>/dev/null || true)"
  say "next: register a device with:  runuser -u pivoice-token -- pivoice token-server devices add NAME"
}

# ---- uninstall ---------------------------------------------------------------------------------

remove_path() {   # remove_path PATH...: each existing one is a change
  local p
  for p in "$@"; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    change "remove $p" rm -rf -- "$p"
  done
}

remove_unit() {
  local unit=$1
  [ -f "$UNIT_DIR/$unit" ] || return 0
  if systemd_running && systemctl is-active --quiet "$unit"; then change "stop $unit" systemctl stop "$unit"; fi
  if systemctl is-enabled --quiet "$unit" 2>/dev/null; then change "disable $unit" systemctl disable --quiet "$unit"; fi
  remove_path "$UNIT_DIR/$unit"
  if systemd_running && [ "$DRY_RUN" = 0 ]; then systemctl daemon-reload; fi
}

remove_accounts() {   # only those this script created (recorded in $ACCOUNTS_RECORD)
  local kind name
  for name in "$@"; do
    for kind in user group; do
      grep -qx "$kind $name" "$ACCOUNTS_RECORD" 2>/dev/null || continue
      if getent "$([ $kind = user ] && echo passwd || echo group)" "$name" >/dev/null; then
        # userdel warns that the group outlives it while an admin is in it: the groupdel below follows
        change "delete $kind $name" bash -c '"$1" "$2" 2>/dev/null || "$1" "$2"' _ "${kind}del" "$name"
      fi
      [ "$DRY_RUN" = 1 ] || sed -i "/^$kind $name\$/d" "$ACCOUNTS_RECORD"
    done
  done
}

uninstall_role() {
  if [ "$ROLE" = device ]; then
    remove_unit "$DEVICE_UNIT"
    remove_path "$UDEV_RULE" "$DEVICE_CACHE"
    [ "$PURGE" = 1 ] && { remove_path "$DEVICE_CONFIG" "$DEVICE_SECRET"; remove_accounts pivoice gpio; }
    [ -f "$UNIT_DIR/$TOKEN_UNIT" ] && { say "kept $VENV_DIR ($TOKEN_UNIT still uses it)"; return 0; }
  else
    remove_unit "$TOKEN_UNIT"
    [ "$PURGE" = 1 ] && { remove_path "$TOKEN_CONFIG" "$TOKEN_KEY" "$TOKEN_STATE"; remove_accounts pivoice-token; }
    [ -f "$UNIT_DIR/$DEVICE_UNIT" ] && { say "kept $VENV_DIR ($DEVICE_UNIT still uses it)"; return 0; }
  fi
  [ "$(readlink "$BIN_LINK" 2>/dev/null)" = "$VENV_DIR/bin/pivoice" ] && remove_path "$BIN_LINK"
  remove_path "$PREFIX"
  if [ "$PURGE" = 1 ]; then
    [ -s "$ACCOUNTS_RECORD" ] || remove_path "$ACCOUNTS_RECORD"
    if [ -d "$ETC_DIR" ] && [ -z "$(ls -A "$ETC_DIR")" ]; then change "remove empty $ETC_DIR" rmdir "$ETC_DIR"; fi
  else
    if [ -d "$ETC_DIR" ]; then say "kept $ETC_DIR (config and secrets; --purge removes them)"; fi
  fi
}
