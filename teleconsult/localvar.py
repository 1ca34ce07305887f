"""First-run material for development under var/: secrets, key material and a self-signed TLS certificate."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import socket
from pathlib import Path


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start so the material is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def development_secrets(var_dir: Path) -> dict[str, str]:
    """Read var/secrets.json, creating it with fresh random values on first use."""
    path = var_dir / "secrets.json"
    generators = {
        "SECRET_KEY": lambda: secrets.token_urlsafe(50),
        "TELECONSULT_KEK": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        "TELECONSULT_AUDIT_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        "TELECONSULT_INDEX_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
        "TELECONSULT_TURN_SECRET": lambda: secrets.token_urlsafe(32),
    }
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in generators if name not in values]
    if missing:
        # Values added by a newer version are generated once; existing ones are never replaced.
        values.update({name: generators[name]() for name in missing})
        _write_private(path, json.dumps(values, indent=2).encode())
    return values


def lan_address() -> str | None:
    """This machine's address on the local network (the one phones on the same Wi-Fi reach), if any."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            # connect() on UDP sends nothing; it only selects the outgoing interface's address.
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


def _lan_addresses() -> list[str]:
    addresses = {"127.0.0.1"}
    lan = lan_address()
    if lan:
        addresses.add(lan)
    return sorted(addresses)


def _certificate_covers(cert_path: Path, addresses: list[str]) -> bool:
    """Whether the certificate still names every current address (a laptop changes networks; phones then
    reach it at a new address, and a certificate without that address fails even after the warning)."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    covered = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    not_expiring = cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    return not_expiring and set(addresses) <= covered


def self_signed_certificate(var_dir: Path) -> tuple[Path, Path]:
    """A development certificate for localhost and this machine's LAN address (phones need HTTPS for the camera)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path = var_dir / "tls" / "cert.pem"
    key_path = var_dir / "tls" / "key.pem"
    if cert_path.exists() and key_path.exists() and _certificate_covers(cert_path, _lan_addresses()):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Teleconsult development")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in _lan_addresses()]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_private(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
