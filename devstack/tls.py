"""Throwaway TLS material for tests: a CA and a server certificate for 127.0.0.1 (openssl)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certs(root: Path) -> dict[str, Path]:
    """Returns paths ``ca`` (CA certificate), ``cert``, ``key`` (PKCS#8, unencrypted) and
    ``pem`` (key and certificate in one file, as Kafka's PEM keystore wants)."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (root / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = root / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=fenced-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out",
        str(cert), "-days", "2", "-extfile", str(ext))
    bundle = root / "server-bundle.pem"
    bundle.write_text(key.read_text() + cert.read_text())
    return {"ca": ca, "cert": cert, "key": key, "pem": bundle}
