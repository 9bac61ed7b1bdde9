"""The operator role through `fx pki`: certify, the CSR flow and verify, like any client role."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from openfl_like.cli.main import cli
from openfl_like.core.ids import Role
from openfl_like.pki import PkiStore
from openfl_like.pki.identity import participant_name, participant_role


def fx(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _client_eku(path: Path) -> list[x509.ObjectIdentifier]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_certify_and_csr_flow_issue_operator_client_certificates(tmp_path: Path) -> None:
    store = PkiStore(tmp_path / "pki")
    pki = ("--pki-dir", str(store.root))
    fx("pki", "init", *pki)

    # one step on the CA host
    issued = fx("pki", "certify", *pki, "--name", "ops1", "--role", "operator")
    # the CSR flow: key made on the operator's host, signed on the CA host
    fx("pki", "csr", "--name", "ops2", "--role", "operator", "--out", str(tmp_path / "req"))
    fx("pki", "sign", *pki, str(tmp_path / "req" / "ops2.csr"), "--yes", "--role", "operator")
    verified = fx("pki", "verify", *pki, "ops1", "--role", "operator")

    assert "issued operator certificate for 'ops1'" in issued
    assert "ops1" in verified
    for name in ("ops1", "ops2"):
        cert = x509.load_pem_x509_certificate(store.cert_path(name).read_bytes())
        assert (participant_name(cert), participant_role(cert)) == (name, Role.OPERATOR)
        assert _client_eku(store.cert_path(name)) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_operator_is_listed_among_the_roles_in_help() -> None:
    assert "operator" in fx("pki", "certify", "--help")
