"""Which TLS files the real transport gets, and the address checks (no network here)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.pki import PkiStore
from openfl_like.transport.credentials import TlsFiles
from openfl_like.vertical.wiring import split_addr, tls_files_for


class _Settings:
    """Stands in for VerticalTransportSettings.tls_files: records its argument, overrides
    the certificate as FX_VERTICAL_CERT would."""

    def __init__(self, cert: Path | None = None) -> None:
        self.cert, self.given = cert, []

    def tls_files(self, base: TlsFiles | None) -> TlsFiles:
        self.given.append(base)
        if base is None:
            raise ConfigError("without a PKI directory ... FX_VERTICAL_CERT")
        return base if self.cert is None else TlsFiles(self.cert, base.key_path,
                                                       base.ca_bundle_path)


def test_pki_dir_gives_the_party_files_then_the_overrides(tmp_path: Path) -> None:
    settings = _Settings(cert=tmp_path / "override.pem")
    files = tls_files_for("bank", tls=True, tls_files=None, pki_dir=tmp_path, settings=settings)
    assert files is not None
    assert settings.given[0].cert_path.name.startswith("bank")
    assert settings.given[0].cert_path.is_relative_to(tmp_path)
    assert files.cert_path == tmp_path / "override.pem"


def test_explicit_files_win_over_the_pki_dir(tmp_path: Path) -> None:
    mine = TlsFiles(tmp_path / "c", tmp_path / "k", tmp_path / "ca")
    settings = _Settings()
    assert tls_files_for("bank", tls=True, tls_files=mine, pki_dir=tmp_path / "other",
                         settings=settings) == mine


def test_no_files_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="FX_VERTICAL_CERT"):
        tls_files_for("bank", tls=True, tls_files=None, pki_dir=None, settings=_Settings())


def test_tls_off_only_with_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert tls_files_for("bank", tls=False, tls_files=None, pki_dir=None,
                             settings=_Settings()) is None
    assert "INSECURE" in caplog.text and "WITHOUT TLS" in caplog.text


@pytest.mark.parametrize("addr", ["nohost", ":80", "h:", "h:port", "h:70000"])
def test_bad_addresses(addr: str) -> None:
    with pytest.raises(ConfigError, match="is not host:port"):
        split_addr(addr, "local_addr")


def test_the_communicator_checks_its_addresses_when_built() -> None:
    from openfl_like.vertical import Communicator

    with pytest.raises(ConfigError, match=r"peer_addr '127\.0\.0\.1:0' is not host:port"):
        Communicator("leader", "127.0.0.1:0", "127.0.0.1:0")
    with pytest.raises(ConfigError, match="local_addr 'everywhere' is not host:port"):
        Communicator("leader", "127.0.0.1:5", "everywhere")


def test_good_addresses() -> None:
    assert split_addr("0.0.0.0:0", "local_addr") == ("0.0.0.0", 0)
    assert split_addr("[::1]:5", "peer_addr") == ("::1", 5)


def test_a_participant_store_without_the_crl_is_a_clear_error(tmp_path: Path) -> None:
    """A party serves its peer and checks revocation like an aggregator: a store imported
    without --crl/--signing-cert fails at start, naming the files and the command."""
    store_files = TlsFiles.for_participant(PkiStore(tmp_path), "bank")
    store_files.cert_path.parent.mkdir(parents=True)
    store_files.cert_path.write_text("(the party's certificate)")
    with pytest.raises(ConfigError, match=(
            r"party bank: .*crl\.pem and .*signing\.crt missing: a party serves its peer .*"
            r"fx pki import --cert bank\.crt --ca-bundle ca-bundle\.pem --crl crl\.pem "
            r"--signing-cert signing\.crt")):
        tls_files_for("bank", tls=True, tls_files=store_files, pki_dir=None,
                      settings=_Settings())
    for path in (store_files.crl_path, store_files.signing_cert_path):
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("(present)")
    assert tls_files_for("bank", tls=True, tls_files=store_files, pki_dir=None,
                         settings=_Settings()) == store_files


def test_files_without_a_crl_run_with_a_warning(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    files = TlsFiles(tmp_path / "c", tmp_path / "k", tmp_path / "ca")  # FX_VERTICAL_* only
    files.cert_path.write_text("(certificate)")
    with caplog.at_level(logging.WARNING):
        assert tls_files_for("bank", tls=True, tls_files=files, pki_dir=None,
                             settings=_Settings()) == files
    assert "not checked for revocation" in caplog.text
