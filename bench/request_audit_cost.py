"""What auditing one request costs: a trivial view with and without one audit event, served by a real
daphne on loopback, measured in the same run, against the same throwaway database.

    .venv/bin/python -m bench.request_audit_cost [--requests 400] [--rounds 5] [--clients 8]

Both views pass through the full production middleware stack (request id, access log, sessions, CSRF,
authentication, OTP); the audited one also writes one event with `audit.services.record()` in its own
transaction, as every audited read does. Rounds alternate between the two views so drift (caches,
autovacuum, CPU frequency) falls on both alike; the medians are printed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import path

# --- The two views, reachable only through this module's own URLconf (never in the product's). ---


def unaudited(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


def audited(request: HttpRequest) -> HttpResponse:
    from audit import services as audit
    from audit.actions import AuditAction, Purpose

    with transaction.atomic():
        audit.record(
            action=AuditAction.TRAIL_VIEWED,
            purpose=Purpose.OPERATIONS,
            actor_user_id=1,
            actor_role="auditor",
            object_type="bench",
            object_id=1,
            details={"page": 1},
        )
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("unaudited", unaudited), path("audited", audited)]

# --- The measurement. ---


def _run_clients(port: int, target: str, requests: int, clients: int) -> float:
    """Requests per second for `requests` GETs of `target`, spread over `clients` keep-alive connections."""
    per_client = requests // clients
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request("GET", target)  # warm the connection up before the clock starts
            connection.getresponse().read()
            barrier.wait()
            for _ in range(per_client):
                connection.request("GET", target)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"{target}: HTTP {response.status}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(errors[0])
    return per_client * clients / elapsed


def _measure(port: int, requests: int, rounds: int, clients: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"/unaudited": [], "/audited": []}
    for _ in range(rounds):
        for target in rates:
            rates[target].append(_run_clients(port, target, requests, clients))
    return rates


def _report(label: str, rates: dict[str, list[float]], events_per_request: int) -> None:
    plain = statistics.median(rates["/unaudited"])
    with_audit = statistics.median(rates["/audited"])
    extra_ms = (1 / with_audit - 1 / plain) * 1000
    print(f"{label}:")
    print(f"  unaudited view  {plain:8.0f} requests/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['/unaudited'])})")
    print(
        f"  audited view    {with_audit:8.0f} requests/s  (rounds: {', '.join(f'{r:.0f}' for r in rates['/audited'])})"
    )
    # The difference of the inverse rates: what one audited request adds (latency alone, or capacity).
    print(f"  ratio audited/unaudited {with_audit / plain:.2f}; {extra_ms:+.2f} ms per audited request")
    print(f"  ({events_per_request} audit event per audited request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per round and view")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teleconsult.settings")
    # One access-log line per request would measure the terminal, not the server.
    os.environ.setdefault("ACCESS_LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases
    from django.urls import clear_url_caches

    from audit.models import AuditEvent
    from teleconsult.daphne_main import daphne_process

    # A throwaway database: the audit trail is append-only (the database refuses deletes), so a
    # benchmark must never write into a real one.
    old_config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    settings.ROOT_URLCONF = __name__ if __name__ != "__main__" else "bench.request_audit_cost"
    clear_url_caches()
    connections.close_all()  # the server process must not share this process's connection

    def application() -> Callable[..., object]:
        from django.core.asgi import get_asgi_application

        return get_asgi_application()

    server = daphne_process(host="127.0.0.1", get_application=application, kwargs={"verbosity": 0})
    server.daemon = True
    server.start()
    try:
        if not server.ready.wait(30):
            raise RuntimeError("daphne did not start")
        port = server.port.value
        db = settings.DATABASES["default"]
        print(
            f"daphne on 127.0.0.1:{port}; PostgreSQL {connections['default'].cursor().connection.info.server_version}"
            f" at {db.get('HOST') or 'local socket'}; {os.cpu_count()} CPUs"
        )
        connections.close_all()
        print(f"{args.rounds} rounds of {args.requests} requests per view")
        sequential = _measure(port, args.requests, args.rounds, 1)
        _report("one client (latency-bound)", sequential, 1)
        concurrent = _measure(port, args.requests, args.rounds, args.clients)
        _report(f"{args.clients} concurrent clients (throughput)", concurrent, 1)
        written = AuditEvent.objects.filter(object_type="bench").count()
        # Each client also makes one warm-up request per round (see _run_clients).
        expected = args.rounds * ((args.requests + 1) + (args.requests // args.clients + 1) * args.clients)
        print(f"audit events written: {written} (expected {expected})")
    finally:
        server.terminate()
        server.join(10)
        connections.close_all()
        teardown_databases(old_config, verbosity=0)


if __name__ == "__main__":
    main()
    sys.exit(0)
