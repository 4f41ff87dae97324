"""The daemon's import set stays lean: what `pivoice run` imports, in a fresh interpreter.

The subprocess follows `pivoice run` (cli.COMMANDS["run"] -> pivoice.app), loads a config with WAV
devices and gpiozero's MockFactory and builds the daemon with app.build, which imports everything a
press will use (PortAudio host, uplink, VAD, resampler, Realtime client, button). Nothing is started.

`email` is the one listed module we cannot keep out: http.client (the token backend's HTTP, and
websocket-client's handshake) imports email.parser and email.message, and importlib.metadata (which
webrtcvad-wheels calls for its version, and gpiozero for its pin factories) imports email.message.
So the test holds pivoice to exactly the email modules those two bring, no more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pivoice.warm import write_throwaway_config

KEPT_OUT = ("starlette", "uvicorn", "httpx", "psycopg", "pydantic", "openai", "websockets", "anyio",
            "pivoice.devserver", "pivoice.tokenserver", "pivoice.doctor", "pivoice.preflight", "http.server",
            "asyncio")
# Third-party distributions a daemon on a Pi needs, by top-level module (C-extension shims included).
THIRD_PARTY = {"yaml", "_yaml", "numpy", "soxr", "webrtcvad", "_webrtcvad", "pyaudio", "gpiozero", "colorzero",
               "websocket"}

RUN_IMPORTS = textwrap.dedent("""
    import importlib, json, os, sys, sysconfig
    def rss_kib():
        return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1])
    site = sysconfig.get_paths()["purelib"]   # before at_start: what it imports is the measurement's own
    at_start = set(sys.modules)
    from pivoice import cli
    app = importlib.import_module(cli.COMMANDS["run"][0])
    after_import_kib = rss_kib()
    from pivoice.config import load
    daemon = app.build(load(sys.argv[1]))
    daemon.discard()
    third_party = sorted({name.split(".")[0] for name, module in list(sys.modules.items())
                          if name not in at_start and (getattr(module, "__file__", None) or "").startswith(site)})
    sources = sorted({f for name, m in list(sys.modules.items())   # frozen stdlib modules have no bytecode file
                      if name not in at_start and (f := getattr(m, "__file__", None) or "").endswith(".py")
                      and getattr(getattr(m, "__spec__", None), "origin", None) != "frozen"})
    print(json.dumps({"modules": sorted(sys.modules), "third_party": third_party, "sources": sources,
                      "threads": len(os.listdir("/proc/self/task")),
                      "rss_kib": {"import": after_import_kib, "built": rss_kib()}}))
""")


def run_python(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def run_set(tmp_path_factory) -> dict:
    path = write_throwaway_config(tmp_path_factory.mktemp("imports"))   # what scripts/install warms with
    return run_python(RUN_IMPORTS, str(path))


def test_run_imports_nothing_from_the_servers_sdks_or_doctor(run_set):
    modules = run_set["modules"]
    assert "pivoice.app" in modules and "pivoice.button" in modules   # the measurement did import the daemon
    leaked = sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in KEPT_OUT))
    assert leaked == []


def test_run_pulls_in_only_the_third_party_packages_a_pi_needs(run_set):
    third_party = set(run_set["third_party"])
    assert {"numpy", "soxr", "gpiozero", "websocket", "yaml"} <= third_party
    assert third_party <= THIRD_PARTY, sorted(third_party - THIRD_PARTY)


def test_email_comes_only_with_http_client_and_importlib_metadata(run_set):
    needed = run_python("import http.client, importlib.metadata, json, sys; "
                        "print(json.dumps({'modules': sorted(sys.modules)}))")["modules"]
    email_of = lambda modules: {m for m in modules if m == "email" or m.startswith("email.")}   # noqa: E731
    assert email_of(run_set["modules"]) <= email_of(needed), sorted(email_of(run_set["modules"]) - email_of(needed))


def test_building_the_daemon_starts_no_thread_but_numpys_blas_pool(run_set):
    # Nothing runs until start(); OpenBLAS (loaded with numpy) keeps nproc-1 workers, capped by
    # OPENBLAS_NUM_THREADS, asleep unless a matrix product wakes them (pivoice never does one).
    blas = run_python("import numpy, os, json; print(json.dumps({'threads': len(os.listdir('/proc/self/task'))}))")
    assert run_set["threads"] == blas["threads"]


@pytest.mark.parametrize("command,kept_out", [
    ("ctl", ("yaml", "numpy", "gpiozero", "websocket", "pivoice.app", "pivoice.config")),
    ("devices", ("numpy", "gpiozero", "websocket", "yaml", "pivoice.app")),
])
def test_small_subcommands_do_not_load_the_daemon(command, kept_out):
    modules = run_python(textwrap.dedent(f"""
        import importlib, json, sys
        from pivoice import cli
        importlib.import_module(cli.COMMANDS[{command!r}][0])
        print(json.dumps({{"modules": sorted(sys.modules)}}))
    """))["modules"]
    assert "pivoice.cli" in modules
    assert [m for m in modules if m.split(".")[0] in kept_out or m in kept_out] == []


def test_the_command_line_alone_imports_no_subcommand():
    modules = run_python("import json, sys; from pivoice import cli; "
                         "print(json.dumps({'modules': sorted(sys.modules)}))")["modules"]
    assert sorted(m for m in modules if m.startswith("pivoice")) == ["pivoice", "pivoice.cli"]


ONLY_WITH_DOCSTRINGS = ("numpy/_typing/_add_docstring.py",)   # numpy skips it under -OO


def test_warm_compiles_every_module_pivoice_run_imports(run_set, tmp_path):
    """scripts/install fills the unit's bytecode cache with `python -m pivoice.warm` (-OO, the cache as
    PYTHONPYCACHEPREFIX): every module with a source file that building the daemon imports must be
    in it, or the first start compiles them (a higher peak RSS, seconds of CPU on a Pi Zero)."""
    cache = tmp_path / "pycache"
    env = {**os.environ, "PYTHONOPTIMIZE": "2", "PYTHONPYCACHEPREFIX": str(cache), "PYTHONDONTWRITEBYTECODE": ""}
    done = subprocess.run([sys.executable, "-m", "pivoice.warm"], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    compiled = {str(p) for p in cache.rglob("*.opt-2.pyc")}
    expected = {source: cache / Path(source).parent.relative_to("/")
                / f"{Path(source).stem}.{sys.implementation.cache_tag}.opt-2.pyc" for source in run_set["sources"]}
    missing = sorted(source for source, pyc in expected.items() if str(pyc) not in compiled
                     and not source.endswith(ONLY_WITH_DOCSTRINGS))
    assert len(expected) > 200 and missing == [], missing
