"""TLS for the embedded broker in tests: a throwaway CA, certificates, and stunnel in front.

Tansu's own ``--cert/--key`` do not take effect in the build we ship, so TLS is terminated by
``stunnel`` (Debian ``stunnel4``): the broker listens in plaintext on one port and advertises
another, where stunnel accepts TLS (and, for mutual TLS, checks client certificates against
the CA) and forwards to the broker. Clients only ever see the TLS port.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from worker.tools.broker import EmbeddedBroker, free_port


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server and the client
    server: Pair
    client: Pair
    rogue_ca: Path  # a CA nobody trusts
    rogue_client: Pair  # a client certificate signed by it


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Pair:
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pair(path, key_path)


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate, and a rogue pair."""
    directory.mkdir(parents=True, exist_ok=True)

    def new_ca(name: str) -> tuple[Path, tuple[x509.Name, ec.EllipticCurvePrivateKey]]:
        key = ec.generate_private_key(ec.SECP256R1())
        pair = _write(directory / f"{name}.pem", key, _certificate(name, key, None, ca=True))
        return pair.cert, (_name(name), key)

    def issue(name: str, by, *, server: bool = False) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        return _write(directory / f"{name}.pem", key, _certificate(name, key, by, server=server))

    ca, ca_issuer = new_ca("test-ca")
    rogue_ca, rogue_issuer = new_ca("rogue-ca")
    return Pki(
        ca=ca,
        server=issue("broker", ca_issuer, server=True),
        client=issue("worker", ca_issuer),
        rogue_ca=rogue_ca,
        rogue_client=issue("intruder", rogue_issuer),
    )


def stunnel_binary() -> str:
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:
        raise AssertionError(
            "stunnel is required for the TLS tests: apt-get install stunnel4 "
            "(scripts/setup.sh installs it when run as root)"
        )
    return found


@contextmanager
def tls_broker(pki: Pki, workdir: Path, *, mutual: bool = False):
    """An embedded broker reachable only through TLS; yields the TLS bootstrap address."""
    binary = stunnel_binary()
    plain, tls = free_port(), free_port()
    config = workdir / f"stunnel-{tls}.conf"
    lines = [
        "foreground = yes",
        "debug = 4",
        f"output = {workdir / f'stunnel-{tls}.log'}",
        "[kafka]",
        f"accept = 127.0.0.1:{tls}",
        f"connect = 127.0.0.1:{plain}",
        f"cert = {pki.server.cert}",
        f"key = {pki.server.key}",
    ]
    if mutual:
        lines += [f"CAfile = {pki.ca}", "verifyChain = yes", "requireCert = yes"]
    config.write_text("\n".join(lines) + "\n")
    with EmbeddedBroker(port=plain, advertised_port=tls) as broker:
        tunnel = subprocess.Popen(
            [binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_listening(tls, tunnel)
            yield f"127.0.0.1:{tls}", broker
        finally:
            tunnel.terminate()
            tunnel.wait(10)


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"stunnel exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"stunnel did not listen on {port} within {timeout}s")


def client_ssl(ca: Path, client: Pair | None = None) -> dict[str, Any]:
    """aiokafka options for a test client talking to the TLS port."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return {"security_protocol": "SSL", "ssl_context": context}
