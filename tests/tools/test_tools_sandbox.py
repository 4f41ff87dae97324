"""Tools inside the daemon unit's real sandbox: a booted Debian bookworm (systemd-nspawn) runs
sandbox_tools_probe.py as a oneshot copy of pivoice.service's [Service] settings (its user, its
credential, its seccomp filter and protections). Command tools must still start their own session,
be killed by process group and have a clean environment; an http tool must read the unit's credential;
timers and the runner's threads must work under the filter.

The checkout is bound into the container and run with the container's Debian python3 (3.11, the same
ABI as the project venv, whose site-packages provide PyYAML).
"""

import json
from pathlib import Path

import pytest

from support.nspawn import booted_container, cannot_boot_reason
from support.rootfs import ensure_base_rootfs
from system.booted_pi import sandbox_copy_of_daemon_unit

pytestmark = pytest.mark.systemd_boot

ROOT = Path(__file__).resolve().parents[2]
INSIDE = "/work/main"
PROBE = "/usr/local/share/pivoice-test/sandbox_tools_probe.py"
UNIT = "pivoice-tools-probe.service"


@pytest.fixture(scope="module")
def probe_report(tmp_path_factory) -> dict:
    reason = cannot_boot_reason()
    if reason:
        pytest.skip(f"booted-systemd test: {reason}")
    base, _ = ensure_base_rootfs()
    log = tmp_path_factory.mktemp("boot") / "boot.log"
    with booted_container(base, "pvtools", log, binds=[(ROOT, INSIDE)]) as ct:
        ct.run(["groupadd", "--system", "gpio"], check=True)
        ct.run(["useradd", "--system", "--user-group", "--no-create-home", "pivoice"], check=True)
        ct.put_file("/etc/pivoice/device-secret", "probe-device-secret-0123456789\n", mode=0o600)
        ct.put_file(PROBE, (ROOT / "tests" / "tools" / "sandbox_tools_probe.py").read_text())
        unit = sandbox_copy_of_daemon_unit((ROOT / "systemd" / "pivoice.service").read_text(),
                                           f"/usr/bin/python3 {PROBE}")
        unit += f"Environment=PYTHONPATH={INSIDE}/daemon:{INSIDE}/.venv/lib/python3.11/site-packages\n"
        ct.put_file(f"/etc/systemd/system/{UNIT}", unit)
        ct.run(["systemctl", "daemon-reload"], check=True)
        ct.run(["systemctl", "start", UNIT], timeout_s=90)    # oneshot: returns when the probe has exited
        status = ct.unit_property(UNIT, "ExecMainStatus")
        output = ct.journal(UNIT)
    lines = [line for line in output.splitlines() if line.startswith("TOOLS-PROBE ")]
    assert status == "0" and lines, f"probe exit status {status}; journal:\n{output[-3000:]}"
    return json.loads(lines[-1].removeprefix("TOOLS-PROBE "))


def test_tools_run_as_the_units_unprivileged_user(probe_report):
    assert probe_report["uid"] != 0
    assert probe_report["get_time"]["ok"] is True


def test_command_environment_is_clean_inside_the_unit(probe_report):
    assert sorted(probe_report["env"]["output"].splitlines()) == [
        "LANG=C.UTF-8", "MPD_HOST=localhost", "PATH=/usr/local/bin:/usr/bin:/bin"]


def test_timeouts_kill_the_process_group_under_the_seccomp_filter(probe_report):
    group, stubborn = probe_report["group"], probe_report["stubborn"]
    assert group["error"]["type"] == "timeout" and group["elapsed_s"] < 1.5
    assert probe_report["group_child_gone"] is True
    assert stubborn["error"]["type"] == "timeout" and 0.75 <= stubborn["elapsed_s"] < 1.8


def test_output_cap_and_cancel_inside_the_unit(probe_report):
    flood = probe_report["flood"]
    assert flood["truncated"] is True and len(flood["output"]) == 4096
    assert probe_report["stuck"]["error"]["type"] == "cancelled"
    assert probe_report["stuck_gone"] is True


def test_http_tool_reads_the_units_credential(probe_report):
    lamp = probe_report["lamp"]
    assert (lamp["ok"], lamp["status"], lamp["body"]) == (True, 200, {"got": {"entity_id": "light.kitchen"}})


def test_timers_fire_inside_the_unit(probe_report):
    assert probe_report["set_timer"]["ok"] is True and probe_report["timer_id"] == "t1"
    assert 0.8 <= probe_report["timer_fired_after_s"] < 1.3
