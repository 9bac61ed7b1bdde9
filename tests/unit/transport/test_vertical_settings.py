"""VerticalTransportSettings: defaults, FX_VERTICAL_* overrides, and errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.vertical_settings import ENV_VARS, VerticalTransportSettings

MIB = 1024 * 1024


def test_defaults_derive_message_limits_from_the_chunk() -> None:
    settings = VerticalTransportSettings()
    assert settings.chunk_bytes == 4 * MIB
    for name in ("client_max_send_bytes", "client_max_recv_bytes", "server_max_send_bytes",
                 "server_max_recv_bytes"):
        assert getattr(settings, name) == 5 * MIB
    assert settings.max_tensor_bytes == settings.max_inbox_bytes == 1024 * MIB
    assert settings.target_name_override == "" and settings.cert_path is None


def test_env_overrides_parse_sizes_paths_and_numbers() -> None:
    env = {
        "FX_VERTICAL_CHUNK_BYTES": "1MiB",
        "FX_VERTICAL_SERVER_MAX_RECV_BYTES": "8MiB",
        "FX_VERTICAL_MAX_INBOX_BYTES": "64MB",
        "FX_VERTICAL_TARGET_NAME": "bank.example",
        "FX_VERTICAL_CERT": "/pki/bank.crt",
        "FX_VERTICAL_RETRY_INITIAL_SECONDS": "0.2",
        "FX_VERTICAL_MAX_STREAMS": "3",
        "FX_VERTICAL_KEY": "",  # empty counts as unset
    }
    settings = VerticalTransportSettings().with_env(env)
    assert settings.chunk_bytes == MIB
    assert settings.client_max_send_bytes == 2 * MIB  # re-derived from the new chunk
    assert settings.server_max_recv_bytes == 8 * MIB
    assert settings.max_inbox_bytes == settings.max_tensor_bytes == 64_000_000
    assert settings.target_name_override == "bank.example"
    assert settings.cert_path == Path("/pki/bank.crt") and settings.key_path is None
    assert settings.retry_initial_seconds == 0.2 and settings.max_streams == 3
    assert VerticalTransportSettings().with_env({}) == VerticalTransportSettings()


def test_every_documented_variable_is_read() -> None:
    assert set(ENV_VARS) >= {
        "FX_VERTICAL_CERT", "FX_VERTICAL_KEY", "FX_VERTICAL_CA", "FX_VERTICAL_TARGET_NAME",
        "FX_VERTICAL_CLIENT_MAX_SEND_BYTES", "FX_VERTICAL_CLIENT_MAX_RECV_BYTES",
        "FX_VERTICAL_SERVER_MAX_SEND_BYTES", "FX_VERTICAL_SERVER_MAX_RECV_BYTES",
        "FX_VERTICAL_CHUNK_BYTES", "FX_VERTICAL_MAX_INBOX_BYTES"}


@pytest.mark.parametrize(("var", "value", "reason"), [
    ("FX_VERTICAL_CHUNK_BYTES", "lots", "FX_VERTICAL_CHUNK_BYTES: expected a size"),
    ("FX_VERTICAL_CLIENT_MAX_RECV_BYTES", "4.5MiB", "FX_VERTICAL_CLIENT_MAX_RECV_BYTES"),
    ("FX_VERTICAL_CHUNK_BYTES", "0", "FX_VERTICAL_CHUNK_BYTES=0"),
    ("FX_VERTICAL_CLIENT_MAX_SEND_BYTES", "1MiB", "FX_VERTICAL_CLIENT_MAX_SEND_BYTES=1MiB"),
    ("FX_VERTICAL_RETRY_MAX_SECONDS", "soon", "FX_VERTICAL_RETRY_MAX_SECONDS: expected a number"),
    ("FX_VERTICAL_FIRST_PIECE_SECONDS", "nan", "FX_VERTICAL_FIRST_PIECE_SECONDS"),
    ("FX_VERTICAL_MAX_STREAMS", "0", "FX_VERTICAL_MAX_STREAMS=0"),
])
def test_a_bad_value_is_a_config_error_naming_the_variable(var: str, value: str,
                                                           reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        VerticalTransportSettings().with_env({var: value})


def test_a_message_limit_too_small_for_a_chunk_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"server_max_recv_bytes .* must be at least chunk_bytes"):
        VerticalTransportSettings(chunk_bytes=MIB, server_max_recv_bytes=MIB)


def test_tls_overrides_replace_single_files(tmp_path: Path) -> None:
    for name in ("store.crt", "store.key", "bundle.pem", "crl.pem", "signing.crt", "mine.crt",
                 "ca.pem"):
        (tmp_path / name).write_text("x")
    base = TlsFiles(tmp_path / "store.crt", tmp_path / "store.key", tmp_path / "bundle.pem",
                    tmp_path / "crl.pem", tmp_path / "signing.crt")
    env = {"FX_VERTICAL_CERT": str(tmp_path / "mine.crt")}
    settings = VerticalTransportSettings().with_env(env)
    files = settings.tls_files(base)
    assert files.cert_path == tmp_path / "mine.crt" and files.key_path == base.key_path
    assert files.crl_path == base.crl_path  # same CA: its CRL still applies
    with_ca = VerticalTransportSettings(ca_path=tmp_path / "ca.pem").tls_files(base)
    assert with_ca.ca_bundle_path == tmp_path / "ca.pem" and with_ca.crl_path is None
    assert VerticalTransportSettings().tls_files(base) == base
    with pytest.raises(ConfigError, match="FX_VERTICAL_CERT, FX_VERTICAL_KEY and FX_VERTICAL_CA"):
        settings.tls_files(None)
    with pytest.raises(ConfigError, match="FX_VERTICAL_KEY: no such file"):
        VerticalTransportSettings(key_path=tmp_path / "missing.key").tls_files(base)
