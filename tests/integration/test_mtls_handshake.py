"""Mutual TLS with Python's ssl module between certificates of our CA (OpenSSL is the judge)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from cryptography import x509

from openfl_like.core.ids import Role
from openfl_like.pki import (
    CertificateAuthority,
    IssuedCertificate,
    PkiStore,
    participant_name,
    participant_role,
)

TIMEOUT = 10.0


@dataclass
class ServerOutcome:
    peer: x509.Certificate | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IssuedCertificate | PkiStore]:
    store = PkiStore(tmp_path_factory.mktemp("mtls") / "pki")
    ca = CertificateAuthority.init(store)
    other_store = PkiStore(tmp_path_factory.mktemp("other") / "pki")
    other = CertificateAuthority.init(other_store)
    return {
        "store": store,
        "other_store": other_store,
        "server": ca.certify("agg", Role.AGGREGATOR),
        "client": ca.certify("col1", Role.COLLABORATOR),
        "foreign_client": other.certify("col1", Role.COLLABORATOR),
    }


def server_context(store: PkiStore, cert: IssuedCertificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert.cert_path, cert.key_path)
    context.load_verify_locations(cafile=store.ca_bundle_path)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(store: PkiStore, cert: IssuedCertificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies server + hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert.cert_path, cert.key_path)
    context.load_verify_locations(cafile=store.ca_bundle_path)
    return context


@contextmanager
def tls_server(context: ssl.SSLContext) -> Iterator[tuple[int, ServerOutcome]]:
    """Serve one TLS connection on 127.0.0.1:<free port> in a thread; always cleaned up."""
    outcome = ServerOutcome()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                with context.wrap_socket(conn, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    outcome.peer = x509.load_der_x509_certificate(der) if der else None
                    if tls.recv(4) == b"ping":
                        tls.sendall(b"pong")
        except (OSError, ssl.SSLError) as exc:
            outcome.error = exc
        finally:
            outcome.done.set()

    thread = threading.Thread(target=serve, name="tls-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], outcome
    finally:
        outcome.done.wait(TIMEOUT)
        thread.join(TIMEOUT)
        listener.close()


def talk(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"ping")
        return tls.recv(4)


def test_mutual_tls_between_our_server_and_client_certificates(pki: dict) -> None:
    # Prepare
    store = pki["store"]
    server, client = server_context(store, pki["server"]), client_context(store, pki["client"])
    # Execute
    with tls_server(server) as (port, outcome):
        reply = talk(port, client)
    # Assert: the handshake worked both ways and the server can read who called.
    assert reply == b"pong"
    assert outcome.error is None
    assert outcome.peer is not None
    assert participant_name(outcome.peer) == "col1"
    assert participant_role(outcome.peer) is Role.COLLABORATOR


def test_client_certificate_of_another_ca_is_refused(pki: dict) -> None:
    store = pki["store"]
    server = server_context(store, pki["server"])
    # The intruder trusts our CA (so it accepts our server) but its own cert is foreign.
    intruder = client_context(store, pki["foreign_client"])

    with tls_server(server) as (port, outcome), pytest.raises((ssl.SSLError, OSError)):
        talk(port, intruder)

    assert isinstance(outcome.error, ssl.SSLError)
    assert "certificate verify failed" in str(outcome.error)
    assert outcome.peer is None


def test_server_certificate_presented_as_client_certificate_is_refused(pki: dict) -> None:
    store = pki["store"]
    server = server_context(store, pki["server"])
    impostor = client_context(store, pki["server"])  # serverAuth only, no clientAuth

    with tls_server(server) as (port, outcome), pytest.raises((ssl.SSLError, OSError)):
        talk(port, impostor)

    assert isinstance(outcome.error, ssl.SSLError)
    assert "certificate purpose" in str(outcome.error)  # X509_V_ERR_INVALID_PURPOSE: the EKU


def test_client_refuses_a_server_without_server_auth(pki: dict) -> None:
    store = pki["store"]
    fake_server = server_context(store, pki["client"])  # clientAuth only, no serverAuth
    client = client_context(store, pki["client"])

    with tls_server(fake_server) as (port, _), pytest.raises(ssl.SSLCertVerificationError):
        talk(port, client)


def test_client_refuses_a_server_of_another_ca(pki: dict) -> None:
    other_store: PkiStore = pki["other_store"]
    foreign_server = CertificateAuthority.load(other_store).certify(
        "agg-x", Role.AGGREGATOR, force=True
    )
    server = server_context(other_store, foreign_server)
    client = client_context(pki["store"], pki["client"])

    with tls_server(server) as (port, _), pytest.raises(ssl.SSLCertVerificationError):
        talk(port, client)
