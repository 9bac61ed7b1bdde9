"""A director certificate that does not name the host dialled: a ConfigError at once, naming
the name dialled and the names the certificate carries (never retried for the whole window)."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.pki import PkiStore
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_client import DirectorClient
from openfl_like.transport.settings import RetrySettings

from .conftest import DIRECTOR, FEDERATION, DirectorHandle, fast_settings


def test_director_hostname_mismatch_is_fatal_at_once(pki: PkiStore, director: DirectorHandle):
    # Prepare: dialled as director.example, a name its certificate does not carry
    settings = fast_settings(target_name_override="director.example")
    settings = replace(settings, retry=RetrySettings(initial_backoff_seconds=0.05,
                                                     max_backoff_seconds=0.3,
                                                     total_seconds=60.0))
    client = DirectorClient(host="127.0.0.1", port=director.port, name="exp-a",
                            director_name=DIRECTOR, federation_uuid=FEDERATION,
                            tls_files=TlsFiles.for_participant(pki, "exp-a"), settings=settings)
    started = time.monotonic()
    # Execute
    with client, pytest.raises(ConfigError) as caught:
        client.list_experiments()
    # Assert
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert "director's certificate does not name 'director.example'" in message
    assert "it names: localhost, 127.0.0.1" in message
