"""Test certificate authorities and certificates, made with openssl inside the container."""
from __future__ import annotations

from tests.integration.helpers import Container


def make_ca(box: Container, directory: str, name: str) -> str:
    """A self-signed CA; returns the path of its certificate ({directory}/{name}-ca.crt)."""
    box.run(f"mkdir -p {directory} && cd {directory} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
            f"-subj '/CN={name} test CA' -keyout {name}-ca.key -out {name}-ca.crt 2>/dev/null")
    return f"{directory}/{name}-ca.crt"


def issue(box: Container, directory: str, ca: str, name: str, sans: list[str]) -> tuple[str, str]:
    """A server certificate for `sans` (DNS names or IPs) signed by CA `ca`; returns (cert, key) paths."""
    alt = ",".join(f"IP:{s}" if s.replace(".", "").isdigit() else f"DNS:{s}" for s in sans)
    box.run(f"""set -e; cd {directory}
        openssl req -newkey rsa:2048 -nodes -subj '/CN={sans[0]}' -keyout {name}.key -out {name}.csr 2>/dev/null
        printf 'subjectAltName={alt}\\n' > {name}.ext
        openssl x509 -req -in {name}.csr -CA {ca}-ca.crt -CAkey {ca}-ca.key -CAcreateserial -days 2 \\
            -extfile {name}.ext -out {name}.crt 2>/dev/null""")
    return f"{directory}/{name}.crt", f"{directory}/{name}.key"
