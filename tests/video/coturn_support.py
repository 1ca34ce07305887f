"""coturn on loopback run from deploy/turnserver.conf itself, with a throwaway certificate authority, for the TURN
tests (VID-6): over UDP (tests/video/test_turn_relay.py, test_call_network.py) and over TCP and TLS
(test_turn_tls_browser.py).

The configuration coturn reads is production's file with only what cannot apply on one machine replaced: the ports
(loopback, free ones), the certificate (one this module signs for `localhost`), the relay port range, and the
loopback exception to the private-address deny list (the peers of a test are on this machine), and, for the TCP
and TLS tests, the UDP listeners (off, so that nothing can reach coturn over UDP). Every other line,
the TLS ones included (protocol versions, cipher list, no DTLS), is the file as deployed, so a change to it is a
change to what the tests run.

Chromium verifies a TURN server's certificate as it verifies a web site's (the network service's TLS client with
the profile's certificate verifier, against the host name of the `turns:` URL): on Linux it trusts an extra
authority added to the user's NSS database, `$HOME/.pki/nssdb`. `trusting_home()` makes such a home with
certutil (Debian's libnss3-tools) for a Chromium started with HOME pointing at it.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

from tests.conftest import require_service

DEPLOY_CONF = Path(settings.BASE_DIR) / "deploy" / "turnserver.conf"

# What the loopback run replaces in deploy/turnserver.conf (everything else is read as deployed).
REPLACED = {
    "listening-port",
    "tls-listening-port",
    "alt-listening-port",
    "alt-tls-listening-port",
    "cert",
    "pkey",
    "min-port",
    "max-port",
    "log-file",
}


def deploy_options(path: Path = DEPLOY_CONF) -> list[tuple[str, str | None]]:
    """The options of a coturn configuration file, in order: `name=value` or a bare flag (value None)."""
    options: list[tuple[str, str | None]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        options.append((name.strip(), value.strip() if sep else None))
    return options


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- certificates ---


@dataclass(frozen=True)
class Certificates:
    """A certificate authority made for one test run and a server certificate it signed (PEM files)."""

    authority: Path
    certificate: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(directory: Path, *, dns_names: tuple[str, ...] = ("localhost",)) -> Certificates:
    """A throwaway CA and an RSA server certificate for `dns_names`, valid from a minute ago for a day.

    RSA, as many public certificates are: it lets a client that offers only static-RSA key exchange complete a
    handshake unless the server's cipher list refuses it (which the ECDSA key would decide on its own)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Teleconsult test TURN CA")
    authority = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(
        authority=directory / "ca.pem", certificate=directory / "turn_cert.pem", key=directory / "turn_key.pem"
    )
    files.authority.write_bytes(authority.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    files.key.chmod(0o600)
    return files


def trusting_home(directory: Path, authority: Path | None) -> Path:
    """A HOME whose NSS database (where Chromium on Linux keeps the user's own trust settings) trusts `authority`
    to identify servers ("C,,"); with None, an empty database: only the system's authorities."""
    certutil = shutil.which("certutil")
    if certutil is None:
        require_service("certutil (Debian's libnss3-tools) is needed to make Chromium trust the test's CA")
    database = directory / ".pki" / "nssdb"
    database.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{database}", "--empty-password"], check=True, capture_output=True)
    if authority is not None:
        subprocess.run(
            [certutil, "-A", "-d", f"sql:{database}", "-n", "teleconsult-test-turn-ca", "-t", "C,,", "-i", authority],
            check=True,
            capture_output=True,
        )
    return directory


# --- coturn ---


@dataclass(frozen=True)
class Coturn:
    """A running coturn: its plain port (3478 in production: TCP, and UDP unless started without), its TLS port
    (443), its relay port range and its log."""

    port: int
    tls_port: int
    relay_base: int
    log: Path


def loopback_config(
    directory: Path, *, port: int, tls_port: int, relay_base: int, certificates: Certificates, udp: bool
) -> Path:
    """deploy/turnserver.conf with the ports, certificate and relay range of this run; without `udp`, no UDP
    listeners."""
    lines = [
        f"{name}={value}" if value is not None else name for name, value in deploy_options() if name not in REPLACED
    ]
    lines += [
        f"listening-port={port}",
        f"tls-listening-port={tls_port}",
        f"cert={certificates.certificate}",
        f"pkey={certificates.key}",
        f"min-port={relay_base}",
        f"max-port={relay_base + 999}",
        # Given on the command line in production (docker-compose.yml).
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        "realm=turn.test",
        # The two participants' relay addresses are on loopback, which production refuses as peers; allowed here
        # and only here (allowed-peer-ip takes precedence over the file's denied-peer-ip ranges).
        "allow-loopback-peers",
        "allowed-peer-ip=127.0.0.1",
        f"pidfile={directory / 'turnserver.pid'}",
        f"userdb={directory / 'turndb'}",
        "log-file=stdout",
        # Session lines (with each TLS session's protocol and cipher) are logged only in verbose mode.
        "verbose",
    ]
    if not udp:
        # Nothing reaches coturn over UDP: a relay candidate can only come over the TCP or TLS listener. (The relay
        # itself, between the two allocations, is UDP on loopback, as it is between coturn and peers in production.)
        lines.append("no-udp")
    config = directory / "turnserver.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def start_coturn(
    directory: Path, *, secret: str, certificates: Certificates, udp: bool
) -> tuple[subprocess.Popen[bytes], Coturn]:
    """coturn from the deployed file (loopback_config), ready: its user database open, its plain port accepting
    TCP connections and, with `udp`, answering STUN over UDP (aioice gives a TURN allocation only 5 s, so a peer
    must not start gathering against a server still starting up)."""
    turnserver = shutil.which("turnserver") or "/usr/bin/turnserver"
    if not Path(turnserver).exists():
        require_service("coturn's turnserver is not installed")
    port, tls_port = free_port(udp=udp), free_tcp_port()
    relay_base = 40_000 + (port % 20) * 1000  # a relay range of its own, away from other test runs
    config = loopback_config(
        directory, port=port, tls_port=tls_port, relay_base=relay_base, certificates=certificates, udp=udp
    )
    log = directory / "turn.log"
    with log.open("w") as output:
        # As docker-compose.yml starts it: the file, and the secret on the command line.
        process = subprocess.Popen(
            [turnserver, "-c", str(config), f"--static-auth-secret={secret}"], stdout=output, stderr=subprocess.STDOUT
        )
    server = Coturn(port=port, tls_port=tls_port, relay_base=relay_base, log=log)
    deadline = time.monotonic() + 20

    def ready() -> bool:
        started = "SQLite DB connection success" in log.read_text()
        return started and _accepts(port) and (not udp or answers_stun(port))

    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.terminate()
            raise AssertionError(f"coturn did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return process, server


def free_port(*, udp: bool) -> int:
    """A port free for TCP and, with `udp`, for UDP too (coturn's plain listener takes both)."""
    while True:
        port = free_tcp_port()
        if not udp:
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def answers_stun(port: int) -> bool:
    """A STUN Binding request over UDP (RFC 8489: type 0x0001, no attributes, the magic cookie) gets its answer."""
    transaction = os.urandom(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.5)
        try:
            probe.sendto(request, ("127.0.0.1", port))
            answer, _ = probe.recvfrom(2048)
        except OSError:  # refused (nothing listening) or no answer in time
            return False
    return len(answer) >= 20 and answer[8:20] == transaction


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def tls_handshake(port: int, *, authority: Path, server_name: str = "localhost", **options: object) -> ssl.SSLSocket:
    """A TLS client connection to coturn's TLS listener, verifying as a browser would; `options` set the context's
    attributes (e.g. maximum_version) before it connects. The caller closes it."""
    context = ssl.create_default_context(cafile=str(authority))
    ciphers = options.pop("ciphers", None)
    if ciphers is not None:
        context.set_ciphers(str(ciphers))
    for name, value in options.items():
        setattr(context, name, value)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise
