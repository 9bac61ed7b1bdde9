"""A real mutual-TLS aggregator in its own process, for memory measurements of the server alone.

    python -m tests.integration.transport.garbage_server PKI_DIR

Prints ``PORT <n>`` once listening and serves until stdin closes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from openfl_like.pki import PkiStore
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.settings import TransportSettings

from .conftest import AGGREGATOR, COLLABORATORS, FEDERATION
from .fake_handler import FakeHandler


def main(pki_dir: str) -> None:
    server = AggregatorGRPCServer(
        FakeHandler(collaborators=set(COLLABORATORS)), aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION,
        tls_files=TlsFiles.for_participant(PkiStore(Path(pki_dir)), AGGREGATOR),
        settings=TransportSettings(server_workers=32),
    )
    running = server.start(host="127.0.0.1", port=0)
    print(f"PORT {running.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        running.stop(0)


if __name__ == "__main__":
    main(sys.argv[1])
