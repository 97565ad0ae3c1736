"""What certificate the proxy serves, as a client sees it (for `barehub status`), and traefik's default
certificate when the site gives none."""
from __future__ import annotations

import socket
import ssl
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from barehub.fsutil import FileSpec, atomic_write, read_private

from barehub.base.paths import Paths
from barehub.settings import Settings

DEFAULT_CERT_NAME = "barehub default certificate (self-signed)"
DEFAULT_CERT_DAYS = 3650


@dataclass(frozen=True)
class ServedCertificate:
    subject: str
    issuer: str
    not_after: datetime


def served_certificate(host: str, port: int, server_name: str | None, timeout: float = 5) -> ServedCertificate:
    """Fetch the certificate served for `server_name` (SNI), without judging it."""
    context = ssl._create_unverified_context()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    cert = x509.load_der_x509_certificate(der)
    return ServedCertificate(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.not_valid_after_utc)


def acme_storage_problem(paths: Paths) -> str | None:
    """traefik ignores an acme.json that is not 0600 and falls back to its default certificate."""
    try:
        mode = stat.S_IMODE(paths.acme_storage.lstat().st_mode)  # the proxy user's directory: no link followed
    except FileNotFoundError:
        return None
    return None if mode == 0o600 else f"{paths.acme_storage} is {mode:o}, not 600: traefik ignores it"


def describe(paths: Paths, settings: Settings) -> dict:
    if not settings.https:
        return {"https": False}
    info: dict = {"https": True, "source": "acme" if settings.acme_domains else "files"}
    try:
        served = served_certificate("127.0.0.1", settings.https_port,
                                    settings.acme_domains[0] if settings.acme_domains else None)
        info.update(subject=served.subject, issuer=served.issuer, expires=served.not_after.isoformat())
    except OSError as e:
        info["error"] = f"no TLS answer on port {settings.https_port}: {e}"
    problem = acme_storage_problem(paths)
    if problem:
        info["error"] = problem
    return info


def default_certificate(paths: Paths) -> tuple[str, str]:
    """(certificate, key) PEM of traefik's default certificate when the site has none: made once (ECDSA
    P-256: cheap for traefik to load at every reload), kept 0600 root in paths.traefik_default_tls."""
    try:
        text = read_private(paths.traefik_default_tls)
    except FileNotFoundError:
        text = new_self_signed(DEFAULT_CERT_NAME, DEFAULT_CERT_DAYS)
        atomic_write(paths.traefik_default_tls, FileSpec(text, 0o600))
    cert_start = text.index("-----BEGIN CERTIFICATE-----")
    return text[cert_start:], text[:cert_start]


def new_self_signed(common_name: str, days: int) -> str:
    """A new key and a certificate for it, signed by itself: key PEM then certificate PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem + cert.public_bytes(serialization.Encoding.PEM).decode()
