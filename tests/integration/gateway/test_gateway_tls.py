"""TLS on the gateway from a certificate and key in settings, checked with real TLS
clients: the SDK over a secure channel, and Python's ssl module doing a plain handshake
(certificate chain, host name, protocol version, HTTP/2 by ALPN). With a client CA the
gateway requires a client certificate (mTLS)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from facefuse_client import FacefuseClient, RetryableError
from gateway_helpers import TEMPLATE, running_gateway


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def issue(ca_key, ca_cert, common_name: str, usage, server: bool):
    """(key PEM, certificate PEM) signed by the CA (self-signed when ca_key is None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name))
               .issuer_name(ca_cert.subject if ca_cert else _name(common_name))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1)))
    if ca_key is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(ca_key or key, hashes.SHA256())
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = issue(None, None, "facefuse test CA", None, False)
    server_key, server_cert = issue(ca_key, ca_cert, "localhost", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_key, client_cert = issue(ca_key, ca_cert, "svc-poster", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    files = {}
    for name, data in {
        "ca.pem": ca_cert.public_bytes(serialization.Encoding.PEM),
        "server.pem": server_cert.public_bytes(serialization.Encoding.PEM), "server.key": _pem(server_key),
        "client.pem": client_cert.public_bytes(serialization.Encoding.PEM), "client.key": _pem(client_key),
    }.items():
        (root / name).write_bytes(data)
        files[name] = root / name
    return files


def test_the_gateway_serves_tls_from_the_certificate_in_settings(pki, credentials, triton, astronaut):
    with running_gateway(credentials, [triton.grpc_url], tls_cert_file=pki["server.pem"],
                         tls_key_file=pki["server.key"]) as gateway:
        assert gateway.listening().endswith("with TLS")
        # A plain TLS handshake: chain and host name verified, TLS 1.2+, HTTP/2 offered.
        context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        context.set_alpn_protocols(["h2"])
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3") and tls.selected_alpn_protocol() == "h2"
            assert dict(x[0] for x in tls.getpeercert()["subject"])["commonName"] == "localhost"

        secure = grpc.ssl_channel_credentials(root_certificates=pki["ca.pem"].read_bytes())
        with FacefuseClient(f"localhost:{gateway.port}", api_key=credentials.full_key, credentials=secure) as client:
            assert client.fuse(astronaut, TEMPLATE).image[:3] == b"\xff\xd8\xff"
        with FacefuseClient(f"127.0.0.1:{gateway.port}", api_key=credentials.full_key) as plaintext:
            with pytest.raises(RetryableError) as refused:
                plaintext.list_templates(timeout_s=5)
        assert refused.value.code is grpc.StatusCode.UNAVAILABLE


def test_with_a_client_ca_the_gateway_requires_a_client_certificate(pki, credentials, triton):
    with running_gateway(credentials, [triton.grpc_url], tls_cert_file=pki["server.pem"],
                         tls_key_file=pki["server.key"], tls_client_ca_file=pki["ca.pem"]) as gateway:
        ca = pki["ca.pem"].read_bytes()
        anonymous = grpc.ssl_channel_credentials(root_certificates=ca)
        with FacefuseClient(f"localhost:{gateway.port}", api_key=credentials.full_key, credentials=anonymous) as client:
            with pytest.raises(RetryableError):
                client.list_templates(timeout_s=5)
        mutual = grpc.ssl_channel_credentials(ca, pki["client.key"].read_bytes(), pki["client.pem"].read_bytes())
        with FacefuseClient(f"localhost:{gateway.port}", api_key=credentials.full_key, credentials=mutual) as client:
            assert TEMPLATE in {t.template_id for t in client.list_templates(timeout_s=10)}
