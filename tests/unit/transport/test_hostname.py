"""Spotting gRPC's hostname-verification refusal, and the message that replaces it."""

from __future__ import annotations

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.pki.pem import load_certificate
from openfl_like.transport.hostname import (
    certificate_names,
    hostname_mismatch_error,
    is_hostname_mismatch,
)


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


NEW = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Custom "
       "verification check failed with error: UNAUTHENTICATED: Hostname Verification Check "
       "failed.")
OLD = "Peer name agg.example.org is not in peer certificate"


@pytest.mark.parametrize("details", [NEW, OLD])
def test_hostname_refusals_are_spotted(details):
    assert is_hostname_mismatch(FakeRpcError(grpc.StatusCode.UNAVAILABLE, details))


@pytest.mark.parametrize("code, details", [
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; Connection refused"),
    (grpc.StatusCode.UNAVAILABLE, "certificate verify failed"),
    (grpc.StatusCode.PERMISSION_DENIED, NEW),
])
def test_other_failures_are_not(code, details):
    assert not is_hostname_mismatch(FakeRpcError(code, details))
    assert not is_hostname_mismatch(ValueError(NEW))


def test_names_of_a_server_certificate(tmp_path):
    ca = CertificateAuthority.init(PkiStore(tmp_path))
    ca.certify("agg", Role.AGGREGATOR, sans=["other.example", "10.0.0.5"])
    cert = load_certificate(ca.store.cert_path("agg"))
    assert certificate_names(cert.public_bytes(Encoding.DER)) == ("other.example", "10.0.0.5")


def test_the_message_names_both_sides():
    error = FakeRpcError(grpc.StatusCode.UNAVAILABLE, NEW)
    message = str(hostname_mismatch_error(
        error, what="handshake", server="aggregator", host="127.0.0.1", port=50051,
        dialled="127.0.0.1", tls_files=None, probe=lambda *_: ("other.example",)))
    assert message.startswith("handshake: the aggregator's certificate does not name "
                              "'127.0.0.1'")
    assert "(it names: other.example)" in message and "--san 127.0.0.1" in message
    unreadable = str(hostname_mismatch_error(
        error, what="x", server="director", host="h", port=1, dialled="h", tls_files=None,
        probe=lambda *_: None))
    assert "(it names: (unreadable))" in unreadable
