"""ensure_vertical_pki: a CA and one party certificate each (server and client EKUs, this
host's names); existing ones are never replaced."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from openfl_like.app.workspace import ensure_vertical_pki
from openfl_like.pki import PkiStore


def test_makes_what_is_missing_and_keeps_the_rest(tmp_path: Path) -> None:
    # Prepare
    store = PkiStore(tmp_path / "pki")
    # Execute
    first = ensure_vertical_pki(store, parties=("shop", "bank"), hosts=("shop.example.org",))
    before = store.cert_path("shop").read_bytes()
    again = ensure_vertical_pki(store, parties=("shop", "bank", "lab"))
    # Assert
    assert first.created_ca and first.issued == ("shop", "bank")
    assert not again.created_ca and again.issued == ("lab",)
    assert store.cert_path("shop").read_bytes() == before
    cert = x509.load_pem_x509_certificate(before)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH in usages
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "shop.example.org"} <= set(names.get_values_for_type(x509.DNSName))
