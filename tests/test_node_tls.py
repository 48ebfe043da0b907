"""TLS and mutual TLS from PEM files."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from client.errors import Unavailable
from client.sdk import LedgerClient
from ledger.errors import LedgerError
from node.server import TlsConfig
from tests.test_node_support import Net, RunningNode, open_ledger


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
          *, ca: bool = False) -> x509.Certificate:  # fmt: skip
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: object) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    assert isinstance(obj, ec.EllipticCurvePrivateKey)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, None, ca=True)
    files = {"ca": ca}
    for who in ("server", "client"):
        k = ec.generate_private_key(ec.SECP256R1())
        files[who] = _cert(who, k, (ca.subject, ca_key))
        files[f"{who}_key"] = k  # type: ignore[assignment]
    paths = {}
    for name, obj in files.items():
        paths[name] = d / f"{name}.pem"
        paths[name].write_bytes(_pem(obj))
    return paths


def test_tls_and_mtls(tmp_path: Path, pki: dict[str, Path]) -> None:
    led = open_ledger(tmp_path / "ledger")
    tls = TlsConfig(pki["server"], pki["server_key"], client_ca_file=pki["ca"])
    node = RunningNode(led, tls=tls)
    try:
        target = f"localhost:{node.port}"
        creds = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].read_bytes(),
            private_key=pki["client_key"].read_bytes(),
            certificate_chain=pki["client"].read_bytes(),
        )
        with LedgerClient(target, credentials=creds, timeout=10) as client:
            assert client.submit(Net().genesis()).index == 0
        # Without a client certificate the handshake is refused.
        anonymous = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        with LedgerClient(target, credentials=anonymous, timeout=3, retries=0) as client:
            with pytest.raises(Unavailable):
                client.checkpoint()
        # Plaintext to a TLS port fails too.
        with LedgerClient(target, timeout=3, retries=0) as client:
            with pytest.raises(Unavailable):
                client.checkpoint()
    finally:
        node.stop()
        led.close()


@pytest.mark.parametrize(("files", "message"), [
    (("missing", "server_key", None), r"cannot read --tls-cert .*missing\.pem: No such file or directory"),
    (("garbage", "server_key", None), r"malformed --tls-cert .*garbage\.pem: not PEM certificates"),
    (("server", "garbage", None), r"malformed --tls-key .*garbage\.pem: not an unencrypted PEM key"),
    (("server", "client_key", None), r"malformed --tls-key .*client_key\.pem: not the key of .*server\.pem's first"),
    (("server", "server_key", "garbage"), r"malformed --tls-client-ca .*garbage\.pem: not PEM certificates"),
])  # fmt: skip
def test_bad_pem_files_are_named_before_the_server_starts(
    tmp_path: Path, pki: dict[str, Path], files: tuple[str, str, str | None], message: str
) -> None:
    """grpc takes any bytes as credentials and fails without a reason (or
    at the first handshake): each file is checked first."""
    paths = {**pki, "missing": tmp_path / "missing.pem", "garbage": tmp_path / "garbage.pem"}
    paths["garbage"].write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    cert, key, ca = files
    tls = TlsConfig(paths[cert], paths[key], paths[ca] if ca else None)
    with pytest.raises(LedgerError, match=message):
        tls.credentials()
