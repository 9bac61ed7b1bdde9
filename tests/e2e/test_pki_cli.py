"""`fx pki` through the real CLI in subprocesses, cross-checked with the openssl command line."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.pki.csr import write_csr

pytestmark = pytest.mark.e2e

FX_SCRIPT = Path(sys.executable).with_name("fx")
FX = [str(FX_SCRIPT)] if FX_SCRIPT.exists() else [sys.executable, "-m", "openfl_like.cli.main"]
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl command line not installed")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
    env.update(extra)
    return env


def fx(
    cwd: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FX, *args], cwd=cwd, capture_output=True, text=True, input=input,
        env=env or clean_env(), timeout=60,
    )


def ok(cwd: Path, *args: str, **kwargs: object) -> str:
    result = fx(cwd, *args, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    return result.stdout


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=30)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its content (and every folder)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A workspace with an initialised PKI in ./pki."""
    ok(tmp_path, "pki", "init")
    return tmp_path


def lib_ca(ws: Path, passphrase: bytes | None = None) -> CertificateAuthority:
    """Set-up through the library (fast): the CLI is what the refusal tests exercise."""
    store = PkiStore(ws / "pki")
    if store.has_ca() and passphrase is None:
        return CertificateAuthority.load(store)
    return CertificateAuthority.init(store, passphrase=passphrase, force=True)


def tamper_csr(path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_csr(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    forged = x509.load_der_x509_csr(der.replace(b"col2", b"col3"))
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))


# ---------------------------------------------------------------------------------------------
@needs_openssl
def test_workspace_flow_verified_by_fx_and_openssl(ws: Path) -> None:
    # Prepare: an aggregator, one collaborator in one step, one through the CSR flow.
    ok(ws, "pki", "certify", "--name", "agg", "--role", "aggregator")
    ok(ws, "pki", "certify", "--name", "col1", "--role", "collaborator")
    ok(ws, "pki", "csr", "--name", "col2", "--role", "collaborator", "--out", "host2")
    signed = ok(ws, "pki", "sign", "host2/col2.csr", "--yes")
    assert "name / role  col2 / collaborator" in signed
    assert not (ws / "pki" / "private" / "col2.key").exists()  # the key stayed on its host
    pki = ws / "pki"
    root, signing, crl = pki / "ca/root.crt", pki / "ca/signing.crt", pki / "ca/crl.pem"
    leaves = {n: pki / "certs" / f"{n}.crt" for n in ("agg", "col1", "col2")}

    # Execute / Assert: fx and openssl agree that every leaf is valid.
    for name, path in leaves.items():
        relative = str(path.relative_to(ws))
        assert f"OK {relative}: {name}" in ok(ws, "pki", "verify", relative)
        result = openssl("verify", "-CAfile", root, "-untrusted", signing, path)
        assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result.stdout
        result = openssl("verify", "-crl_check", "-CRLfile", crl, "-CAfile", root,
                         "-untrusted", signing, path)
        assert result.returncode == 0, result.stderr
    # EKU as openssl sees it: the aggregator is a server and not a client, and vice versa.
    purpose = {"agg": "sslserver", "col1": "sslclient", "col2": "sslclient"}
    wrong = {"sslserver": "sslclient", "sslclient": "sslserver"}
    for name, path in leaves.items():
        base = ("verify", "-CAfile", root, "-untrusted", signing)
        assert openssl(*base, "-purpose", purpose[name], path).returncode == 0
        assert openssl(*base, "-purpose", wrong[purpose[name]], path).returncode != 0

    listing = ok(ws, "pki", "list")
    for name, role in (("agg", "aggregator"), ("col1", "collaborator"), ("col2", "collaborator")):
        assert any(name in line and role in line and " no " in line
                   for line in listing.splitlines())

    # Revocation: fx names the check, openssl fails with the CRL, the others still pass.
    assert "revoked 'col1'" in ok(ws, "pki", "revoke", "col1")
    result = fx(ws, "pki", "verify", "col1")
    assert result.returncode != 0 and "failed the revoked check" in result.stderr
    with_crl = ("verify", "-crl_check", "-CRLfile", crl, "-CAfile", root, "-untrusted", signing)
    result = openssl(*with_crl, leaves["col1"])
    assert result.returncode != 0 and "revoked" in (result.stdout + result.stderr)
    assert openssl(*with_crl, leaves["col2"]).returncode == 0
    assert openssl("verify", "-CAfile", root, "-untrusted", signing, leaves["col1"]).returncode == 0
    assert any("col1" in line and "yes" in line for line in ok(ws, "pki", "list").splitlines())


@needs_openssl
def test_openssl_text_shows_the_intended_extensions(ws: Path) -> None:
    ok(ws, "pki", "certify", "--name", "agg", "--role", "aggregator", "--san", "10.9.8.7",
       "--san", "agg.example.org")
    ok(ws, "pki", "certify", "--name", "env1", "--role", "envoy")
    pki = ws / "pki"

    def text(path: Path) -> str:
        result = openssl("x509", "-text", "-noout", "-in", path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    server, client = text(pki / "certs/agg.crt"), text(pki / "certs/env1.crt")
    root, signing = text(pki / "ca/root.crt"), text(pki / "ca/signing.crt")
    for leaf in (server, client):
        assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in leaf
        assert "X509v3 Key Usage: critical\n                Digital Signature\n" in leaf
        assert "X509v3 Subject Key Identifier" in leaf
        assert "X509v3 Authority Key Identifier" in leaf
        assert "ecdsa-with-SHA384" in leaf and "NIST CURVE: P-384" in leaf
    assert "TLS Web Server Authentication" in server
    assert "TLS Web Client Authentication" not in server
    assert "IP Address:10.9.8.7" in server and "DNS:agg.example.org" in server
    assert "TLS Web Client Authentication" in client
    assert "TLS Web Server Authentication" not in client
    assert "URI:urn:openfl-like:envoy:env1" in client
    assert "OU=envoy, CN=env1" in client or "OU = envoy, CN = env1" in client
    assert "CA:TRUE, pathlen:1" in root and "CA:TRUE, pathlen:0" in signing
    for ca in (root, signing):
        assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in ca
    assert "Extended Key Usage" not in root + signing


def test_rsa_option(tmp_path: Path) -> None:
    ok(tmp_path, "pki", "init", "--key-type", "rsa")
    ok(tmp_path, "pki", "certify", "--name", "agg", "--role", "aggregator", "--key-type", "rsa")

    assert "OK" in ok(tmp_path, "pki", "verify", "agg", "--role", "aggregator")


# ---------------------------------------------------------------------------------------------
BadCase = Callable[[Path], list[str]]


def _with_csr(ws: Path) -> None:
    write_csr(ws / "host", "col2", Role.COLLABORATOR)


def _case_tampered(ws: Path) -> list[str]:
    _with_csr(ws)
    tamper_csr(ws / "host/col2.csr")
    return ["pki", "sign", "host/col2.csr", "--yes"]


def _case_name_mismatch(ws: Path) -> list[str]:
    _with_csr(ws)
    return ["pki", "sign", "host/col2.csr", "--yes", "--name", "col9"]


def _case_role_mismatch(ws: Path) -> list[str]:
    _with_csr(ws)
    return ["pki", "sign", "host/col2.csr", "--yes", "--role", "envoy"]


def _case_existing_sign(ws: Path) -> list[str]:
    _with_csr(ws)
    lib_ca(ws).certify("col2", Role.COLLABORATOR)
    return ["pki", "sign", "host/col2.csr", "--yes"]


def _case_existing_certify(ws: Path) -> list[str]:
    lib_ca(ws).certify("col1", Role.COLLABORATOR)
    return ["pki", "certify", "--name", "col1", "--role", "collaborator"]


def _case_existing_csr(ws: Path) -> list[str]:
    _with_csr(ws)
    return ["pki", "csr", "--name", "col2", "--role", "collaborator", "--out", "host"]


def _case_corrupt_signing_cert(ws: Path) -> list[str]:
    (ws / "pki/ca/signing.crt").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n")
    return ["pki", "certify", "--name", "col1", "--role", "collaborator"]


def _case_corrupt_signing_key(ws: Path) -> list[str]:
    (ws / "pki/ca/signing.key").write_text("garbage")
    return ["pki", "certify", "--name", "col1", "--role", "collaborator"]


def _case_corrupt_crl(ws: Path) -> list[str]:
    lib_ca(ws).certify("col1", Role.COLLABORATOR)
    (ws / "pki/ca/crl.pem").write_text("garbage")
    return ["pki", "revoke", "col1"]


def _case_corrupt_csr(ws: Path) -> list[str]:
    (ws / "bad.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    return ["pki", "sign", "bad.csr", "--yes"]


def _case_corrupt_cert_verify(ws: Path) -> list[str]:
    (ws / "pki/certs").mkdir()
    (ws / "pki/certs/col1.crt").write_text("garbage")
    return ["pki", "verify", "col1"]


def _case_encrypted_ca_without_passphrase(ws: Path) -> list[str]:
    lib_ca(ws, passphrase=b"pw")
    return ["pki", "certify", "--name", "col1", "--role", "collaborator"]


BAD_CASES: dict[str, tuple[bool, BadCase]] = {
    # case: (init a CA first?, setup returning the fx arguments)
    "dotdot name": (True, lambda ws: ["pki", "certify", "--name", "../x", "--role", "envoy"]),
    "slash name": (True, lambda ws: ["pki", "certify", "--name", "a/b", "--role", "envoy"]),
    "csr slash name": (True, lambda ws: ["pki", "csr", "--name", "a/b", "--role", "envoy",
                                         "--out", "host"]),
    "unknown role": (True, lambda ws: ["pki", "certify", "--name", "x", "--role", "admin"]),
    "bad san": (True, lambda ws: ["pki", "certify", "--name", "agg", "--role", "aggregator",
                                  "--san", "no/such host"]),
    "no CA certify": (False, lambda ws: ["pki", "certify", "--name", "x", "--role", "envoy"]),
    "no CA verify": (False, lambda ws: ["pki", "verify", "x"]),
    "no CA list": (False, lambda ws: ["pki", "list"]),
    "no CA revoke": (False, lambda ws: ["pki", "revoke", "x"]),
    "init twice": (True, lambda ws: ["pki", "init"]),
    "tampered csr": (True, _case_tampered),
    "csr name mismatch": (True, _case_name_mismatch),
    "csr role mismatch": (True, _case_role_mismatch),
    "sign existing": (True, _case_existing_sign),
    "certify existing": (True, _case_existing_certify),
    "csr existing": (True, _case_existing_csr),
    "missing csr file": (True, lambda ws: ["pki", "sign", "nope.csr", "--yes"]),
    "corrupt csr": (True, _case_corrupt_csr),
    "corrupt signing cert": (True, _case_corrupt_signing_cert),
    "corrupt signing key": (True, _case_corrupt_signing_key),
    "corrupt crl": (True, _case_corrupt_crl),
    "corrupt cert": (True, _case_corrupt_cert_verify),
    "revoke unknown": (True, lambda ws: ["pki", "revoke", "ghost"]),
    "encrypted CA, no passphrase": (True, _case_encrypted_ca_without_passphrase),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    # Prepare
    init, setup = BAD_CASES[case]
    if init:
        lib_ca(tmp_path)
    args = setup(tmp_path)
    before = snapshot(tmp_path)
    # Execute
    result = fx(tmp_path, *args)
    # Assert
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stdout
    assert len(lines) == 1 and lines[0].startswith("fx: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


def test_sign_asks_before_signing(tmp_path: Path) -> None:
    lib_ca(tmp_path)
    _with_csr(tmp_path)
    before = snapshot(tmp_path)

    refused = fx(tmp_path, "pki", "sign", "host/col2.csr", input="n\n")
    assert refused.returncode != 0 and "sign this request?" in refused.stderr
    assert "key SHA-256" in refused.stdout and "CN=col2,OU=collaborator" in refused.stdout
    assert snapshot(tmp_path) == before

    accepted = fx(tmp_path, "pki", "sign", "host/col2.csr", input="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert (tmp_path / "pki/certs/col2.crt").exists()


def test_passphrase_file_protects_the_ca_keys(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("correct horse\n")
    (tmp_path / "wrong.txt").write_text("battery staple\n")
    ok(tmp_path, "pki", "init", "--passphrase-file", "pw.txt")

    wrong = fx(tmp_path, "pki", "certify", "--name", "c", "--role", "envoy",
               "--passphrase-file", "wrong.txt")
    assert wrong.returncode != 0 and "wrong passphrase" in wrong.stderr
    ok(tmp_path, "pki", "certify", "--name", "c", "--role", "envoy",
       env=clean_env(FX_CA_PASSPHRASE="correct horse"))
    ok(tmp_path, "pki", "revoke", "c", "--passphrase-file", "pw.txt")
    assert b"ENCRYPTED" in (tmp_path / "pki/ca/signing.key").read_bytes()


def test_pki_dir_option_and_environment(tmp_path: Path) -> None:
    ok(tmp_path, "pki", "init", "--pki-dir", "elsewhere")
    ok(tmp_path, "pki", "certify", "--name", "c", "--role", "envoy",
       env=clean_env(FX_PKI_DIR=str(tmp_path / "elsewhere")))

    assert (tmp_path / "elsewhere/certs/c.crt").exists()
    assert not (tmp_path / "pki").exists()
    assert "OK" in ok(tmp_path, "pki", "verify", "--pki-dir", "elsewhere", "c")


def test_help_documents_options(tmp_path: Path) -> None:
    text = ok(tmp_path, "pki", "init", "--help")
    assert "--passphrase-file" in text and "FX_CA_PASSPHRASE" in text and "--pki-dir" in text
    for command in ("init", "certify", "csr", "sign", "verify", "revoke", "list"):
        assert "--pki-dir" in ok(tmp_path, "pki", command, "--help")


# ---------------------------------------------------------------------------------------------
def test_pki_commands_import_neither_grpc_nor_tensorflow(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from openfl_like.cli.main import main\n"
        "for argv in (['pki', '--help'], ['pki', 'init'], "
        "['pki', 'certify', '--name', 'a', '--role', 'aggregator'], ['pki', 'list']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'tensorflow', 'keras')]\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, env=clean_env(), timeout=60)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_certify_finishes_well_under_a_second(ws: Path) -> None:
    timings = []
    for i in range(3):
        start = time.perf_counter()
        ok(ws, "pki", "certify", "--name", f"c{i}", "--role", "collaborator")
        timings.append(time.perf_counter() - start)

    assert min(timings) < 1.0, timings
