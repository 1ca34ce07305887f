"""`manage.py serve`: the whole platform on this machine, for `make run`.

It starts daphne serving plain HTTP on 127.0.0.1:8000 (this computer) and HTTPS on 0.0.0.0:8443 (phones on
the same network: browsers give camera access only on HTTPS pages), plus the background workers, and
supervises them: a crashed worker is restarted with growing delays, and if daphne dies everything stops.
Ctrl-C or SIGTERM stops the children in order and releases the embedded database, which then shuts down.
Production runs daphne and the workers as separate containers instead (see docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from teleconsult import demo
from teleconsult.config import env_int
from teleconsult.embedded_db import stop_embedded_database
from teleconsult.localvar import lan_address, self_signed_certificate

# The background workers: sealing the audit trail (AUD-2), the task queue (notifications, SCH-8) and the
# scheduling sweep (overdue notifications queued again, lapsed holds expired). A worker whose command does not
# exist (yet) is left out.
WORKER_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("audit_seal", "--every", "5"),
    # --no-reload: the supervisor restarts it; the autoreloader would put a second process in between.
    ("db_worker", "--no-reload", "--interval", "1", "--queue-name", "*"),
    ("scheduling_sweep", "--every", "60"),
)
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
# A worker that ran this long before crashing is considered healthy again: its restart delay starts over.
HEALTHY_RUN_SECONDS = 60.0
MAX_RESTART_DELAY_SECONDS = 60.0


def _endpoint_value(value: str) -> str:
    # Twisted endpoint descriptions separate fields with ':'; colons and backslashes in values are escaped.
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Same option Twisted sets on its listening sockets, so a port in TIME_WAIT is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


# Loaded here, in the parent: between fork and exec the child should only make the one system call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: if `serve` itself is killed outright, the kernel stops the child too."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            # Its own process group: Ctrl-C in the terminal reaches only `serve`, which stops the children
            # in order (a worker interrupted mid-batch by the terminal would print a traceback).
            process_group=0,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Command(BaseCommand):
    help = "Run the platform locally: daphne on HTTP and HTTPS, and the background workers, supervised."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface for plain HTTP (default 127.0.0.1).")
        parser.add_argument("--port", type=int, help="HTTP port (default: PORT or 8000).")
        parser.add_argument("--tls-host", default="0.0.0.0", help="Interface for HTTPS (default 0.0.0.0).")  # noqa: S104
        parser.add_argument("--tls-port", type=int, help="HTTPS port (default: TLS_PORT or 8443).")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the background workers.")

    def handle(self, *args: Any, **options: Any) -> None:
        port: int = options["port"] or env_int("PORT", 8000, minimum=1, maximum=65535)
        tls_port: int = options["tls_port"] or env_int("TLS_PORT", 8443, minimum=1, maximum=65535)
        host: str = options["host"]
        tls_host: str = options["tls_host"]
        if port == tls_port:
            raise CommandError("PORT and TLS_PORT must differ.")
        for name, bind_host, number in (("PORT", host, port), ("TLS_PORT", tls_host, tls_port)):
            if _port_in_use(bind_host, number):
                raise CommandError(
                    f"Port {number} on {bind_host} is already in use (another Teleconsult, or another program). "
                    f"Stop it, or choose another port with {name}=... or --{name.lower().replace('_', '-')}."
                )

        if settings.TLS_CERT_FILE and settings.TLS_KEY_FILE:
            cert_file, key_file = Path(settings.TLS_CERT_FILE), Path(settings.TLS_KEY_FILE)
        else:
            cert_file, key_file = self_signed_certificate(settings.VAR_DIR)

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        web = Child(
            "daphne",
            [
                sys.executable,
                "-m",
                # daphne on uvloop, as production starts it (teleconsult/daphne_main.py).
                "teleconsult.daphne_main",
                # Verbosity 0 turns daphne's own access log off: it prints raw paths with query strings.
                # Our AccessLogMiddleware writes one line per request with the route pattern instead.
                "--verbosity",
                "0",
                "-e",
                f"tcp:port={port}:interface={_endpoint_value(host)}",
                "-e",
                f"ssl:port={tls_port}:interface={_endpoint_value(tls_host)}"
                f":privateKey={_endpoint_value(str(key_file))}:certKey={_endpoint_value(str(cert_file))}",
                "teleconsult.asgi:application",
            ],
            env=env,
        )
        manage_py = str(Path(settings.BASE_DIR) / "manage.py")
        available = get_commands()
        workers = (
            []
            if options["no_worker"]
            else [
                Child(command[0], [sys.executable, manage_py, *command], env=env)
                for command in WORKER_COMMANDS
                if command[0] in available
            ]
        )

        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        exit_status = 0
        try:
            web.start()
            for worker in workers:
                worker.start()
            if not self._wait_until_serving(web, host, port, stopping):
                if not stopping.is_set():
                    exit_status = 1
                return
            self._print_banner(port, tls_port, workers)
            exit_status = self._supervise(web, workers, stopping)
        finally:
            # Workers first: they may be finishing a task that daphne's shutdown does not concern.
            self._stop_children([*workers, web])
            # Release this process's handle on the embedded database now: it stops once no holder is left.
            stop_embedded_database()
            self.stdout.write("Teleconsult stopped.")
        if exit_status:
            sys.exit(exit_status)

    def _wait_until_serving(self, web: Child, host: str, port: int, stopping: threading.Event) -> bool:
        probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
        probe_host = f"[{probe_host}]" if ":" in probe_host else probe_host
        url = f"http://{probe_host}:{port}/healthz"
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not stopping.is_set():
            if not web.running():
                assert web.process is not None
                self.stderr.write(f"daphne exited during start-up with status {web.process.returncode}.")
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            stopping.wait(0.3)
        if not stopping.is_set():
            self.stderr.write(f"daphne did not answer {url} within {STARTUP_TIMEOUT_SECONDS:.0f} s.")
        return False

    def _print_banner(self, port: int, tls_port: int, workers: list[Child]) -> None:
        lan = lan_address()
        lines = [
            "",
            "Teleconsult is running.",
            f"  On this computer:     http://localhost:{port}",
            "  On phones and tablets on the same network (accept the certificate warning once):",
            f"                        https://{lan or 'localhost'}:{tls_port}",
            "  Background workers:   "
            + (", ".join(" ".join(w.argv[2:]) for w in workers) if workers else "not started"),
            "",
        ]
        if self._demo_seeded():
            lines += [*demo.sign_in_lines(), ""]
        lines.append("Press Ctrl-C to stop.")
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def _demo_seeded(self) -> bool:
        from accounts.models import User

        try:
            return User.objects.filter(email__in=[person.email for person in demo.PEOPLE]).exists()
        except DatabaseError:
            # Not migrated yet (`serve` run on its own): the platform still starts; there is just no demo.
            return False
        finally:
            # This supervising process keeps no connection (and no pool threads) while it waits; only
            # daphne and the worker use the database.
            for connection in connections.all():
                connection.close()
                close_pool = getattr(connection, "close_pool", None)
                if close_pool is not None:
                    close_pool()

    def _supervise(self, web: Child, workers: list[Child], stopping: threading.Event) -> int:
        while not stopping.wait(0.5):
            if not web.running():
                assert web.process is not None
                self.stderr.write(f"daphne exited with status {web.process.returncode}; stopping everything.")
                return 1
            for worker in workers:
                self._look_after(worker)
        return 0

    def _look_after(self, worker: Child) -> None:
        if worker.running():
            return
        now = time.monotonic()
        if worker.restart_at is None:
            assert worker.process is not None
            # Exponential backoff (1, 2, 4 … 60 s) so a worker failing at start-up does not spin.
            if now - worker.started_at >= HEALTHY_RUN_SECONDS:
                worker.failures = 0
            delay = min(2.0**worker.failures, MAX_RESTART_DELAY_SECONDS)
            worker.failures += 1
            worker.restart_at = now + delay
            self.stderr.write(
                f"The worker {worker.name} exited with status {worker.process.returncode}; "
                f"restarting it in {delay:.0f} s."
            )
        elif now >= worker.restart_at:
            worker.start()

    def _stop_children(self, children: list[Child]) -> None:
        running = [child for child in children if child.running()]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop within {STOP_TIMEOUT_SECONDS:.0f} s; killing it.")
                child.process.kill()
                child.process.wait()
