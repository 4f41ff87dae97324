"""pivoice under a real systemd: installed by scripts/install in a booted Debian bookworm (nspawn).

The tests share one container (see booted_pi.py) and run in file order: the ones that only look
come first, then the ones that restart things, and the stop test last. Each state-changing test
puts the unit back the way it found it, so one failure does not cascade.
"""

from __future__ import annotations

import io
import json
import re
import time
import wave

import pytest
import yaml

from booted_pi import ADMIN, CHECKOUT, DEV_API_KEY, REPLY_WAV, run_install, sandbox_copy_of_daemon_unit

pytestmark = pytest.mark.systemd_boot

DAEMON, BACKEND = "pivoice.service", "pivoice-token-server.service"
STOP_BOUND_S = 3.0
EXPOSURE_BOUNDS = {DAEMON: 1.6, BACKEND: 1.5}
SIGKILL_RE = re.compile(r"SIGKILL|signal=KILL|status=9/KILL")


def test_both_units_active_and_the_credential_arrives(pi):
    ct = pi.ct
    for unit in (BACKEND, DAEMON):
        ct.wait_active(unit, timeout_s=60)
    # the daemon reads its secret from the credential: a key fetch succeeds only if it arrived
    seen = []
    try:
        ct.wait_until("a key from the token backend",
                      lambda: seen.append(pi.status()["token"]) or seen[-1].get("state") == "ok", timeout_s=30)
    except TimeoutError:
        pytest.fail(f"the daemon's token status never became ok: {seen[-1] if seen else None}")
    assert seen[-1]["last_error"] is None, seen[-1]
    log = ct.journal(DAEMON)
    secret_errors = [line for line in log.splitlines() if "secret" in line.lower()
                     and any(word in line.lower() for word in ("error", "cannot", "missing", "denied"))]
    assert not secret_errors, secret_errors
    creds = ct.run(["ls", f"/run/credentials/{DAEMON}"], timeout_s=10)
    assert "device-secret" in creds.stdout, creds.stdout + creds.stderr
    assert pi.device_secret not in log + ct.journal(BACKEND), "a secret reached the journal"


def test_ctl_status_works_for_the_admin_without_sudo(pi):
    result = pi.ct.run(["pivoice", "ctl", "status"], ADMIN, timeout_s=30)   # documented path: on PATH
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert "token" in status and "metrics" in status, status
    groups = pi.ct.run(["id", "-nG"], ADMIN, check=True).stdout.split()
    assert "pivoice" in groups and "sudo" in groups, groups


def test_a_press_plays_a_reply_recorded_in_the_journal(pi):
    ct = pi.ct
    ct.run(["rm", "-f", REPLY_WAV], check=True)
    cursor = ct.journal_cursor()
    t0 = time.monotonic()
    assert pi.ctl("press").returncode == 0
    log = ct.wait_until("conversation ended in the journal",
                        lambda: (text := ct.journal(DAEMON, cursor)) and "conversation ended" in text and text,
                        timeout_s=60, interval_s=0.5)
    pi.timings.figure("press_to_conversation_end_s", round(time.monotonic() - t0, 2))
    assert "reply played" in log, log
    assert re.search(r"reply played \((\d+) ms", log) and int(re.search(r"reply played \((\d+) ms", log)[1]) > 500
    with wave.open(io.BytesIO(ct.read_file(REPLY_WAV))) as w:
        frames = w.readframes(w.getnframes())
        duration_s = w.getnframes() / w.getframerate()
    peak = max(abs(int.from_bytes(frames[i:i + 2], "little", signed=True)) for i in range(0, len(frames), 2))
    pi.timings.figure("reply_wav_s", round(duration_s, 2))
    assert duration_s > 0.5 and peak > 1000, (duration_s, peak)


def test_doctor_reports_config_backend_and_realtime_ok(pi):
    result = pi.ct.run(["sudo", "pivoice", "doctor", "--no-button", "--json"], ADMIN, timeout_s=120)   # as the README
    try:
        checks = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"doctor --json printed no JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    by_name = {c["check"]: c for c in checks}
    for name in ("config", "backend", "realtime"):   # backend = the token backend: a real mint
        assert by_name.get(name, {}).get("status") == "ok", by_name.get(name, f"no {name} check in {list(by_name)}")
    assert not [c for c in checks if c["status"] == "fail"], checks
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("unit", [DAEMON, BACKEND])
def test_security_exposure_inside_the_booted_container(pi, unit):
    out = pi.ct.run(["systemd-analyze", "security", "--no-pager", unit], timeout_s=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout + out.stderr)
    assert match, out.stdout + out.stderr
    pi.timings.figure(f"exposure_{unit}", float(match[1]))
    assert float(match[1]) <= EXPOSURE_BOUNDS[unit]


def test_library_paths_are_visible_inside_the_daemon_sandbox(pi):
    """C1's probe (tests/system/sandbox_probe.py) run under the daemon's own [Service] settings: it exits
    non-zero and names the path when anything gpiozero, lgpio, alsa-lib or PortAudio needs is hidden."""
    ct = pi.ct
    probe_unit = "pivoice-sandbox-probe.service"
    ct.put_file("/usr/local/share/pivoice-test/sandbox_probe.py",   # /home is hidden from the unit
                ct.path(f"{CHECKOUT}/tests/system/sandbox_probe.py").read_bytes())
    unit = sandbox_copy_of_daemon_unit(ct.run(["systemctl", "cat", DAEMON], check=True).stdout,
                                       "/opt/pivoice/.venv/bin/python /usr/local/share/pivoice-test/sandbox_probe.py")
    ct.put_file(f"/etc/systemd/system/{probe_unit}", unit)
    ct.run(["systemctl", "daemon-reload"], check=True)
    try:
        ct.run(["systemctl", "start", probe_unit], timeout_s=60)   # oneshot: returns when the probe exited
        exit_status = ct.unit_property(probe_unit, "ExecMainStatus")
        output = ct.run(["journalctl", "--no-pager", "-o", "cat", f"_SYSTEMD_UNIT={probe_unit}"], check=True).stdout
    finally:
        ct.run(["rm", "-f", f"/etc/systemd/system/{probe_unit}"])
        ct.run(["systemctl", "daemon-reload"])
    report = json.loads(output[output.index("{"):output.rindex("}") + 1])
    pi.timings.figure("sandbox_probe", report)
    problems = [line for line in output.splitlines() if line.startswith("sandbox_probe:")]
    assert exit_status == "0" and not problems, f"the daemon's sandbox hides what the libraries need:\n{output}"
    assert not [path for path, state in report.items() if state == "denied"], report
    assert report["/proc/cpuinfo"] == "readable", report   # gpiozero's board revision fallback


def test_a_second_install_changes_nothing(pi):
    ct = pi.ct
    pids = {unit: ct.wait_active(unit) for unit in (DAEMON, BACKEND)}
    t0 = time.monotonic()
    token_again = run_install(ct, pi.token_install_args, DEV_API_KEY)
    daemon_again = run_install(ct, pi.install_args, pi.device_secret)
    pi.timings.figure("second_install_both_s", round(time.monotonic() - t0, 2))
    # the first run took the admin from $SUDO_USER; naming them changes nothing either
    daemon_admin_named = run_install(ct, [*pi.install_args, "--admin", ADMIN], pi.device_secret)
    for result in (token_again, daemon_again, daemon_admin_named):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "nothing to change" in result.stdout + result.stderr, result.stdout + result.stderr
    assert {unit: ct.wait_active(unit) for unit in (DAEMON, BACKEND)} == pids, "a second install restarted a unit"


def test_bytecode_for_optimize_2_is_compiled_once_not_at_every_start(pi):
    """The unit runs Python with -OO (docstrings out of memory) and PYTHONPYCACHEPREFIX in its
    CacheDirectory: Debian ships no *.opt-2.pyc and /usr, /opt are read-only to the daemon, so
    without the cache every start would compile the daemon, numpy and the stdlib again."""
    ct = pi.ct
    pid = ct.wait_active(DAEMON)
    environ = ct.run(["cat", f"/proc/{pid}/environ"], check=True).stdout.split("\0")
    assert "PYTHONOPTIMIZE=2" in environ, environ
    cache = "/var/cache/pivoice/pycache"
    listing = ct.sh(f"find {cache} -name '*.pyc' -printf '%u %p\\n'", check=True).stdout.splitlines()
    paths = [line.split(" ", 1)[1] for line in listing]
    assert {line.split(" ", 1)[0] for line in listing} == {"pivoice"}, listing[:5]
    for module in ("/usr/lib/python3.11/json/__init__.cpython-311.opt-2.pyc",                # the stdlib
                   "/site-packages/numpy/__init__.cpython-311.opt-2.pyc",
                   "/site-packages/pivoice/app.cpython-311.opt-2.pyc"):
        assert any(p.endswith(module) for p in paths), f"{module} not in {cache} ({len(paths)} files)"
    ct.run(["touch", "/run/pivoice-bytecode-mark"], check=True)
    try:
        ct.run(["systemctl", "restart", DAEMON], check=True, timeout_s=60)
        ct.wait_active(DAEMON, not_pid=pid)
        ct.wait_until("the daemon's key fetch", lambda: pi.status()["token"].get("state") == "ok", timeout_s=30)
        fresh = ct.sh(f"find {cache} -name '*.pyc' -newer /run/pivoice-bytecode-mark", check=True).stdout.split()
    finally:
        ct.run(["rm", "-f", "/run/pivoice-bytecode-mark"])
    assert fresh == [], f"a restart compiled again: {fresh[:10]}"


def test_sighup_applies_a_good_config_and_refuses_a_bad_one(pi):
    ct = pi.ct
    pid = ct.wait_active(DAEMON)
    config = ct.path("/etc/pivoice/pivoice.yaml")
    original = config.read_text()
    try:
        config.write_text(edited(original, ("conversation", "idle_timeout_s"), 5))
        cursor = ct.journal_cursor()
        t0 = time.monotonic()
        ct.run(["systemctl", "reload", DAEMON], check=True, timeout_s=30)
        ct.wait_until("reload: applied", lambda: "reload: applied" in ct.journal(DAEMON, cursor), 30)
        pi.timings.figure("reload_applied_s", round(time.monotonic() - t0, 2))
        assert ct.wait_active(DAEMON) == pid

        config.write_text(edited(original, ("audio", "gate", "aggressiveness"), 9))   # webrtcvad: 0..3
        cursor = ct.journal_cursor()
        ct.run(["systemctl", "reload", DAEMON], check=True, timeout_s=30)
        refusal = ct.wait_until("reload refused", lambda: [line for line in ct.journal(DAEMON, cursor).splitlines()
                                                            if "reload refused" in line], 30)
        assert "/etc/pivoice/pivoice.yaml" in refusal[0] and "aggressiveness" in refusal[0], refusal
        assert ct.wait_active(DAEMON) == pid
        assert pi.status()["token"], "ctl status no longer answers after a refused reload"
    finally:
        config.write_text(original)
        cursor = ct.journal_cursor()
        ct.run(["systemctl", "reload", DAEMON], timeout_s=30)
        ct.wait_until("reload back to the original", lambda: "reload: applied" in ct.journal(DAEMON, cursor), 30)


def edited(config_text: str, key_path: tuple[str, ...], value) -> str:
    cfg = yaml.safe_load(config_text)
    node = cfg
    for key in key_path[:-1]:
        node = node.setdefault(key, {})
    node[key_path[-1]] = value
    return yaml.safe_dump(cfg, sort_keys=False)


def test_kill_9_is_followed_by_a_restart(pi):
    ct = pi.ct
    pid = ct.wait_active(DAEMON)
    restarts = int(ct.unit_property(DAEMON, "NRestarts"))
    t0 = time.monotonic()
    ct.run(["kill", "-9", pid], check=True)
    new_pid = ct.wait_active(DAEMON, timeout_s=30, not_pid=pid)
    pi.timings.figure("kill9_to_active_s", round(time.monotonic() - t0, 2))
    assert int(ct.unit_property(DAEMON, "NRestarts")) > restarts
    assert new_pid != pid


def test_a_frozen_controller_is_restarted_by_the_watchdog(pi):
    ct = pi.ct
    watchdog_s = ct.unit_timespan_s(DAEMON, "WatchdogUSec")
    assert 0 < watchdog_s < 120, f"pivoice.service: WatchdogSec={watchdog_s} s"
    # an idle daemon keeps pinging: minutes since the install, and no watchdog kill so far
    assert "Watchdog timeout" not in ct.journal(DAEMON)
    dropin = "/etc/systemd/system/pivoice.service.d/test-hooks.conf"
    ct.put_file(dropin, "[Service]\nEnvironment=PIVOICE_TEST_HOOKS=1\n")
    try:
        ct.run(["systemctl", "daemon-reload"], check=True)
        ct.run(["systemctl", "restart", DAEMON], check=True, timeout_s=60)
        pid = ct.wait_active(DAEMON)
        cursor = ct.journal_cursor()
        t0 = time.monotonic()
        frozen = pi.ctl("debug-freeze")
        assert frozen.returncode == 0, frozen.stderr
        new_pid = ct.wait_active(DAEMON, timeout_s=watchdog_s + 30, not_pid=pid)
        pi.timings.figure("watchdog_freeze_to_active_s", round(time.monotonic() - t0, 2))
        pi.timings.figure("watchdog_sec", watchdog_s)
        assert "Watchdog timeout" in ct.journal(DAEMON, cursor)
        assert new_pid != pid
    finally:
        ct.run(["rm", "-f", dropin])
        ct.run(["systemctl", "daemon-reload"])
        ct.run(["systemctl", "restart", DAEMON], timeout_s=60)


@pytest.mark.parametrize("unit", [DAEMON, BACKEND])
def test_stop_is_quick_and_kills_nothing(pi, unit):
    ct = pi.ct
    ct.wait_active(unit)
    cursor = ct.journal_cursor()
    timed = ct.sh(f"s=$(date +%s%N); systemctl stop {unit}; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))",
                  timeout_s=60, check=True)
    stop_s = int(timed.stdout.strip()) / 1000
    pi.timings.figure(f"stop_{unit}_s", stop_s)
    print(f"systemctl stop {unit}: {stop_s:.3f} s")
    log = ct.journal(unit, cursor)
    try:
        assert "Stopped" in log, log   # systemd's own lines about the unit are there, so a kill would be too
        assert ct.unit_property(unit, "Result") == "success", log
        assert not SIGKILL_RE.search(log), log
        assert stop_s < STOP_BOUND_S, f"stop took {stop_s:.2f} s"
    finally:
        ct.run(["systemctl", "start", unit], timeout_s=60)
