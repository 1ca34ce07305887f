"""The production shape (OPS-2): the compose file, the proxy and the TURN configuration are accepted by
the tools that will run them."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from tests.conftest import require_service

ROOT = Path(settings.BASE_DIR)
COMPOSE_ENV = {
    "TELECONSULT_DOMAIN": "teleconsult.example.pe",
    "ACME_EMAIL": "operaciones@example.pe",
    "WEB_PUBLIC_IP": "203.0.113.10",
    "TURN_PUBLIC_IP": "203.0.113.11",
    "TURN_DOMAIN": "turn.example.pe",
}


def _tool(name: str, *candidates: Path) -> str:
    for candidate in (*candidates, shutil.which(name)):
        if candidate and Path(candidate).exists():
            return str(candidate)
    require_service(f"{name} is not installed")
    raise AssertionError("unreachable")


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    compose = _tool("docker-compose", Path("/usr/bin/docker-compose"))
    # Only the variables given: nothing from the developer's shell or a stray .env may satisfy the file.
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [compose, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_validates():
    result = _compose("config", "-q", env=COMPOSE_ENV)
    assert result.returncode == 0, result.stderr


def test_compose_file_has_every_production_service():
    services = _compose("config", "--services", env=COMPOSE_ENV)
    assert services.returncode == 0, services.stderr
    assert set(services.stdout.split()) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker",
        "task-worker",
        "scheduling-sweep",
        "caddy",
        "coturn",
    }
    rendered = _compose("config", env=COMPOSE_ENV).stdout
    assert "replicas: 2" in rendered
    assert "/readyz" in rendered
    assert "service_completed_successfully" in rendered
    assert "TELECONSULT_ENV: production" in rendered
    # Secrets arrive as files; none is written into the environment.
    for name in (
        "SECRET_KEY",
        "TELECONSULT_KEK",
        "TELECONSULT_AUDIT_KEY",
        "TELECONSULT_INDEX_KEY",
        "DATABASE_PASSWORD",
        "EMAIL_URL",
    ):
        assert f"{name}_FILE: /run/secrets/" in rendered
        assert not re.search(rf"^\s+{name}: ", rendered, re.MULTILINE)


def test_compose_file_names_a_missing_required_setting():
    incomplete = {k: v for k, v in COMPOSE_ENV.items() if k != "TELECONSULT_DOMAIN"}
    result = _compose("config", "-q", env=incomplete)
    assert result.returncode != 0
    assert "TELECONSULT_DOMAIN" in result.stderr


def test_caddyfile_validates():
    caddy = _tool("caddy", Path(sys.executable).parent / "caddy")
    result = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(ROOT / "deploy" / "Caddyfile")],
        env={**os.environ, "TELECONSULT_DOMAIN": "teleconsult.example.pe", "ACME_EMAIL": "ops@example.pe"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stderr + result.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_turnserver_conf_is_accepted_by_coturn(tmp_path):
    turnserver = _tool("turnserver", Path("/usr/bin/turnserver"))
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "turn.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    plain_port, tls_port = _free_port(), _free_port()
    # The production file as is, except for the certificate paths and unprivileged ports.
    conf = (ROOT / "deploy" / "turnserver.conf").read_text()
    conf = conf.replace("/run/secrets/turn_cert", str(tmp_path / "cert.pem"))
    conf = conf.replace("/run/secrets/turn_key", str(tmp_path / "key.pem"))
    conf = re.sub(r"^listening-port=.*$", f"listening-port={plain_port}", conf, flags=re.MULTILINE)
    conf = re.sub(r"^tls-listening-port=.*$", f"tls-listening-port={tls_port}", conf, flags=re.MULTILINE)
    (tmp_path / "turnserver.conf").write_text(conf)
    log = tmp_path / "turn.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                turnserver,
                "-c",
                str(tmp_path / "turnserver.conf"),
                "--static-auth-secret=test-secret",
                "--realm=turn.test",
                "--listening-ip=127.0.0.1",
                "--external-ip=127.0.0.1",
                f"--pidfile={tmp_path / 'turn.pid'}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 15
            listening = False
            while time.monotonic() < deadline and process.poll() is None and not listening:
                try:
                    socket.create_connection(("127.0.0.1", tls_port), timeout=0.5).close()
                    listening = True
                except OSError:
                    time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(timeout=10)
    text = log.read_text()
    assert listening, text
    assert "Bad configuration format" not in text
    assert "TLS1.2: Certificate file found" in text
