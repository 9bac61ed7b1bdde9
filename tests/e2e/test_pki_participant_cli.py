"""The README's CSR flow across two stores, through the real CLI: the CA host and a collaborator
host each with its own pki/; `fx pki import` brings the signed certificate back, and verify and
list work in the participant store. Cross-checked with `openssl verify`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.test_pki_cli import fx, needs_openssl, ok, openssl

pytestmark = pytest.mark.e2e


@pytest.fixture
def hosts(tmp_path: Path) -> tuple[Path, Path]:
    """(CA host, collaborator host) folders; col1's CSR signed on the CA host and sent back."""
    ca_host, col_host = tmp_path / "ca-host", tmp_path / "col-host"
    ca_host.mkdir()
    col_host.mkdir()
    ok(ca_host, "pki", "init")
    ok(col_host, "pki", "csr", "--name", "col1", "--role", "collaborator")
    shutil.copy(col_host / "pki" / "requests" / "col1.csr", ca_host / "col1.csr")
    ok(ca_host, "pki", "sign", "col1.csr", "--yes")
    for name in ("certs/col1.crt", "ca/ca-bundle.pem", "ca/crl.pem"):
        shutil.copy(ca_host / "pki" / name, col_host / Path(name).name)
    return ca_host, col_host


def test_before_import_verify_and_list_say_what_to_run(hosts):
    _, col_host = hosts
    for args in (("pki", "verify", "col1"), ("pki", "list")):
        result = fx(col_host, *args)
        assert result.returncode != 0
        assert "fx pki import --cert FILE --ca-bundle FILE" in result.stderr, result.stderr


@needs_openssl
def test_import_then_verify_list_and_init_in_the_participant_store(hosts):
    ca_host, col_host = hosts
    # Execute
    out = ok(col_host, "pki", "import", "--cert", "col1.crt", "--ca-bundle", "ca-bundle.pem")
    # Assert: the files are where `fx collaborator start` looks for them
    pki = col_host / "pki"
    assert "imported the collaborator certificate of 'col1'" in out
    assert (pki / "certs" / "col1.crt").read_bytes() == (col_host / "col1.crt").read_bytes()
    check = openssl("verify", "-CAfile", pki / "ca" / "ca-bundle.pem", pki / "certs" / "col1.crt")
    assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr
    verified = ok(col_host, "pki", "verify", "col1")
    assert verified.startswith("OK pki/certs/col1.crt: col1 (collaborator)")
    assert "participant store" in verified and "revocation not checked" in verified
    listed = ok(col_host, "pki", "list")
    assert "participant store" in listed and "col1" in listed and "valid" in listed
    refused = fx(col_host, "pki", "init")
    assert refused.returncode != 0 and "participant store" in refused.stderr
    assert "fx pki verify" in refused.stderr  # says what does work here
    # a CRL imported later makes a revocation visible on this host
    ok(ca_host, "pki", "revoke", "col1")
    again = fx(col_host, "pki", "import", "--cert", "col1.crt", "--ca-bundle", "ca-bundle.pem",
               "--crl", str(ca_host / "pki" / "ca" / "crl.pem"))
    assert again.returncode != 0 and "revoked" in again.stderr
    shutil.copy(ca_host / "pki" / "ca" / "crl.pem", pki / "ca" / "crl.pem")
    gone = fx(col_host, "pki", "verify", "col1")
    assert gone.returncode != 0 and "failed the revoked check" in gone.stderr


def test_import_refuses_a_certificate_for_another_key(hosts):
    ca_host, col_host = hosts
    # Prepare: the CA re-issues col1 with a key of its own (not this host's CSR)
    ok(ca_host, "pki", "certify", "--name", "col1", "--role", "collaborator", "--force")
    # Execute
    result = fx(col_host, "pki", "import", "--cert", str(ca_host / "pki" / "certs" / "col1.crt"),
                "--ca-bundle", "ca-bundle.pem")
    # Assert: one error line, nothing written
    assert result.returncode != 0
    assert result.stderr.count("fx: error:") == 1 and "issued for another key" in result.stderr
    assert not (col_host / "pki" / "certs").exists()


def test_import_refuses_another_ca_bundle_unless_forced(hosts, tmp_path):
    _, col_host = hosts
    ok(col_host, "pki", "import", "--cert", "col1.crt", "--ca-bundle", "ca-bundle.pem")
    other = tmp_path / "other-ca"
    other.mkdir()
    ok(other, "pki", "init")
    bundle = col_host / "pki" / "ca" / "ca-bundle.pem"
    before = bundle.read_bytes()
    # the certificate does not chain to the other bundle: refused before the bundle question
    result = fx(col_host, "pki", "import", "--cert", "col1.crt", "--ca-bundle",
                str(other / "pki" / "ca" / "ca-bundle.pem"), "--force")
    assert result.returncode != 0 and "chain" in result.stderr
    assert bundle.read_bytes() == before
