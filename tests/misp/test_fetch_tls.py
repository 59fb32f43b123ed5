"""TLS against a real HTTPS server on a loopback port with a self-signed certificate.

The server answers restSearch like MISP (an empty attribute list); what is
under test is the client's certificate handling: verification on by
default, ``misp.ca_file`` trusting a private CA, ``misp.ssl_verification_mode = "none"``
working with a loud warning, and a verification failure being a clear,
non-retried FetchError.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from misp_ti.config import build_config
from misp_ti.errors import FetchError
from misp_ti.misp.client import MispClient

KEY = "tls-test-key-0123456789abcdef"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "misp-ti test MISP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    return cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.hits += 1  # type: ignore[attr-defined]
        body = b'{"response": {"Attribute": []}}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("X-Result-Count", "1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path, Any]]:
    cert, key = self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.hits = 0  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert, server
    finally:
        server.shutdown()
        server.server_close()


def client(url: str, **misp: Any) -> MispClient:
    settings = build_config({"misp": {"url": url, "api_key": KEY, "max_retries": 3, "backoff_initial": "0.001s", **misp}}).misp
    return MispClient(settings)


def test_self_signed_certificate_is_refused_by_default(https_server: tuple[str, Path, Any]) -> None:
    url, _, server = https_server
    with pytest.raises(FetchError) as info:
        client(url).search("attributes", {})
    message = str(info.value)
    assert "TLS certificate verification" in message and "misp.ca_file" in message
    assert KEY not in message
    assert server.hits == 0  # the handshake failed: no request was ever sent, none retried


def test_ca_file_trusts_the_private_certificate(https_server: tuple[str, Path, Any]) -> None:
    url, cert, server = https_server
    result = client(url, ca_file=str(cert)).search("attributes", {})
    assert result.items == [] and server.hits == 1


def test_verify_off_connects_and_warns(https_server: tuple[str, Path, Any], caplog: pytest.LogCaptureFixture) -> None:
    url, _, server = https_server
    caplog.set_level(logging.WARNING, logger="misp_ti")
    client(url, ssl_verification_mode="none").search("attributes", {})
    assert server.hits == 1
    assert any("verification" in r.getMessage() and "OFF" in r.getMessage() for r in caplog.records)
