"""TLS: the operator's certificate, or a development certificate made on first start.

The development certificate is self-signed, valid for localhost, 127.0.0.1, ::1 and this host's
LAN addresses (so a phone on the same Wi-Fi can try a call), and is regenerated when it is about
to expire or when the host's addresses changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEV_CERT = "dev-cert.pem"
DEV_KEY = "dev-key.pem"


class TlsError(RuntimeError):
    """The certificate or key cannot be used."""


def lan_addresses() -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses of this host's interfaces (no traffic is sent to find them)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    try:
        import ifaddr  # shipped with aiortc (through aioice)

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                raw = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
                try:
                    addr = ipaddress.ip_address(raw)
                except ValueError:
                    continue
                if not addr.is_loopback and not addr.is_link_local:
                    found.add(addr)
    except Exception:
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None):
                addr = ipaddress.ip_address(info[4][0])
                if not addr.is_loopback and not addr.is_link_local:
                    found.add(addr)
        except OSError:
            pass
    return sorted(found, key=lambda a: (a.version, int(a)))


def _wanted_sans() -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    host = socket.gethostname()
    if host and host != "localhost":
        sans.append(x509.DNSName(host))
    sans.extend(x509.IPAddress(a) for a in lan_addresses())
    return sans


def _still_good(cert_path: Path, sans: list[x509.GeneralName]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    return cert.not_valid_after_utc > soon and all(s in have for s in sans)


def ensure_dev_certificate(cert_dir: Path) -> tuple[Path, Path]:
    cert_path, key_path = cert_dir / DEV_CERT, cert_dir / DEV_KEY
    sans = _wanted_sans()
    if key_path.exists() and _still_good(cert_path, sans):
        return cert_path, key_path
    try:
        cert_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TlsError(f"cannot create {cert_dir}: {exc.strerror}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ruang development certificate")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp_key = key_path.with_suffix(".tmp")
    tmp_cert = cert_path.with_suffix(".tmp")
    try:
        fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_bytes)
        tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.replace(tmp_key, key_path)
        os.replace(tmp_cert, cert_path)
    except OSError as exc:  # a full disk or a read-only file system: one clear line
        for partial in (tmp_key, tmp_cert):
            with contextlib.suppress(OSError):
                partial.unlink()
        raise TlsError(
            f"cannot write the development certificate in {cert_dir}: {exc.strerror}"
        ) from None
    return cert_path, key_path


def ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load certificate {cert} / key {key}: {exc}") from None
    return ctx
