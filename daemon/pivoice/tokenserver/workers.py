"""Run the app in N uvicorn worker processes sharing one pre-bound listening socket.

The parent binds the socket itself (so `port: 0` works and the real port is known),
starts the workers through uvicorn's own supervisor (which restarts a worker that dies
and stops on SIGTERM/SIGINT), and reports readiness only once every worker has finished
its start-up and is accepting (to systemd too: READY=1 for `Type=notify`). On SIGTERM it
tells systemd STOPPING=1 and returns only when every process it started has exited, so
`systemctl stop` has nothing left to SIGKILL. Runs in the main thread of the parent process.
"""

from __future__ import annotations

import logging
import time
from multiprocessing import resource_tracker
from typing import Callable

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from pivoice.sdnotify import Notifier, SystemdNotifier

log = logging.getLogger(__name__)
APP_FACTORY = "pivoice.tokenserver.app:create_app_from_env"
WORKER_READY_TIMEOUT_S = 30.0


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, plus a readiness callback once all first-generation workers serve,
    and STOPPING=1 to systemd as soon as a stop signal is handled."""

    def __init__(self, config: uvicorn.Config, sockets, on_ready: Callable[[], None], notifier: Notifier):
        super().__init__(config, sockets)
        self._on_ready = on_ready
        self._notifier = notifier
        self.ready = False

    def handle_term(self) -> None:
        self._notifier.notify("STOPPING=1")
        super().handle_term()

    def handle_int(self) -> None:
        self._notifier.notify("STOPPING=1")
        super().handle_int()

    def init_processes(self) -> None:
        super().init_processes()
        for process in self.processes:
            if not process.wait_until_ready(WORKER_READY_TIMEOUT_S, self.should_exit):
                log.error("worker %s did not start serving within %.0f s", process.pid, WORKER_READY_TIMEOUT_S)
                return  # the supervisor loop sees the failed worker and stops
        self.ready = True
        self._on_ready()


def _stop_resource_tracker() -> None:
    """Stop the helper process multiprocessing starts beside spawned workers, and reap it.

    The resource tracker exits only when the last holder of its pipe closes it, i.e. just
    after this process exits, so systemd (KillMode=mixed) found it still running and killed
    it with SIGKILL on every stop. The stdlib has no public call for this; `_stop()` has
    existed since Python 3.8 and does exactly "close our end, then waitpid".
    """
    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is None:
        log.warning("cannot stop multiprocessing's resource tracker on this Python; it exits after us")
        return
    started_at = time.monotonic()
    try:
        stop()
    except Exception as exc:   # e.g. a tracker this process did not start: never fail the exit over it
        log.warning("cannot stop multiprocessing's resource tracker: %s", exc)
        return
    log.debug("resource tracker stopped in %.0f ms", (time.monotonic() - started_at) * 1000)


def run_workers(*, host: str, port: int, workers: int, cert_file: str | None, key_file: str | None,
                on_ready: Callable[[int], None] | None = None, notifier: Notifier | None = None) -> int:
    """Serve until SIGTERM/SIGINT; 0 after a clean run, 1 if the workers never became ready."""
    notifier = notifier or SystemdNotifier.from_env()
    config = uvicorn.Config(
        APP_FACTORY, factory=True, host=host, port=port, workers=workers,
        ssl_certfile=cert_file, ssl_keyfile=key_file,
        log_config=None,        # our own logging setup (stderr, one format) applies in every process
        access_log=False,       # the audit log covers every mint; health probes would only add noise
        server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
    sock = config.bind_socket()
    bound_port = sock.getsockname()[1]
    scheme = "https" if cert_file else "http"
    log.info("token server listening on %s://%s:%d with %d worker(s)", scheme, host, bound_port, workers)

    def ready() -> None:
        log.info("all %d worker(s) are serving", workers)
        if on_ready is not None:
            on_ready(bound_port)
        notifier.notify(f"READY=1\nSTATUS=serving on port {bound_port} with {workers} worker(s)")

    supervisor = _Supervisor(config, [sock], ready, notifier)
    try:
        supervisor.run()
    finally:
        sock.close()
        _stop_resource_tracker()
    return 0 if supervisor.ready else 1
