"""What certificate the proxy serves, as a client sees it (for `barehub status`)."""
from __future__ import annotations

import socket
import ssl
import stat
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from barehub.paths import Paths
from barehub.settings import Settings


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
        mode = stat.S_IMODE(paths.acme_storage.stat().st_mode)
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
