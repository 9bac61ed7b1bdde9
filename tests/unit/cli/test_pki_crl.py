"""`fx pki crl refresh` in-process: the success path and its refusals as one error line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from openfl_like.cli.main import cli, main
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, RevocationChecker
from openfl_like.pki.revocation import crl_number


def _crl(store: PkiStore) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(store.crl_path.read_bytes())


def run_fx(args: list[str]) -> tuple[int, str, str]:
    """``fx`` as the console script runs it (errors become one line and an exit code)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


@pytest.fixture
def store(tmp_path: Path) -> PkiStore:
    store = PkiStore(tmp_path / "pki")
    ca = CertificateAuthority.init(store)
    ca.certify("col", Role.COLLABORATOR)
    ca.revoke("col")
    return store


def test_refresh_resigns_with_a_higher_number_and_the_same_entries(store: PkiStore) -> None:
    # Prepare
    before = _crl(store)

    # Execute
    result = CliRunner().invoke(
        cli, ["pki", "crl", "refresh", "--pki-dir", str(store.root), "--days", "30"]
    )

    # Assert
    assert result.exit_code == 0, result.output
    after = _crl(store)
    assert crl_number(after) == crl_number(before) + 1
    assert {r.serial_number for r in after} == {r.serial_number for r in before}
    assert after.next_update_utc - after.last_update_utc == timedelta(days=30)
    assert f"number {crl_number(after)}, 1 revoked certificate(s)" in result.output
    assert RevocationChecker(store.crl_path, store.signing_cert_path).revoked_serials


def test_refresh_with_an_encrypted_ca_needs_the_passphrase_file(tmp_path: Path) -> None:
    store = PkiStore(tmp_path / "pki")
    secret = tmp_path / "pass.txt"
    secret.write_text("s3cret\n")
    CertificateAuthority.init(store, passphrase=b"s3cret")

    code, out, err = run_fx(["pki", "crl", "refresh", "--pki-dir", str(store.root),
                             "--passphrase-file", str(secret)])
    assert code == 0 and "CRL re-signed: number 2" in out and not err

    before = store.crl_path.read_bytes()
    code, out, err = run_fx(["pki", "crl", "refresh", "--pki-dir", str(store.root)])
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and err.startswith("fx: error: ")
    assert store.crl_path.read_bytes() == before  # nothing written


@pytest.mark.parametrize(("args", "message"), [
    (["--days", "0"], "--days"),
    (["--days", "soon"], "--days"),
])  # fmt: skip
def test_refresh_refuses_bad_days(store: PkiStore, args: list[str], message: str) -> None:
    before = store.crl_path.read_bytes()
    code, _, err = run_fx(["pki", "crl", "refresh", "--pki-dir", str(store.root), *args])
    assert code == 2 and message in err
    assert store.crl_path.read_bytes() == before


def test_refresh_without_a_ca_is_one_error_line(tmp_path: Path) -> None:
    code, out, err = run_fx(["pki", "crl", "refresh", "--pki-dir", str(tmp_path / "none")])
    assert code == 3 and not out
    assert err.strip() == f"fx: error: no CA in {tmp_path / 'none'}: run `fx pki init` first"
