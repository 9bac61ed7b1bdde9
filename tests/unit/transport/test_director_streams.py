"""Package streams without a network: lazy reading, skipped files drained and checked, names."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from openfl_like.core.errors import ProtocolError, ResourceLimitError
from openfl_like.core.experiments import OutgoingFile
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb
from openfl_like.protocol.director_convert import check_file_name
from openfl_like.transport.director_streams import incoming_files, outgoing_chunks, write_file


def _file(tmp_path: Path, name: str, data: bytes) -> OutgoingFile:
    path = tmp_path / name
    path.write_bytes(data)
    return OutgoingFile(name, len(data), hashlib.sha256(data).hexdigest(), path)


def test_outgoing_then_incoming_round_trip_in_small_chunks(tmp_path: Path) -> None:
    # Prepare
    files = [_file(tmp_path, "a.bin", b"a" * 10), _file(tmp_path, "b.bin", b""),
             _file(tmp_path, "c.bin", bytes(range(7)))]
    header = base_pb2.MessageHeader(sender="director")
    # Execute
    chunks = list(outgoing_chunks(files, header, chunk_size=4))
    received = {f.path: b"".join(f.chunks) for f in incoming_files(iter(chunks), max_total=17,
                                                                    expected_total=17)}
    # Assert
    assert chunks[0].header.sender == "director" and not chunks[1].HasField("header")
    assert max(len(c.data) for c in chunks) == 4
    assert received == {"a.bin": b"a" * 10, "b.bin": b"", "c.bin": bytes(range(7))}


def test_a_skipped_file_is_drained_and_still_checked(tmp_path: Path) -> None:
    files = [_file(tmp_path, "skip.bin", b"s" * 9), _file(tmp_path, "keep.bin", b"k" * 5)]
    stream = incoming_files(iter(list(outgoing_chunks(files, None, 2))), max_total=14)
    next(stream)  # its chunks are never read
    kept = next(stream)
    assert (kept.path, b"".join(kept.chunks)) == ("keep.bin", b"k" * 5)
    bad = [pb.PackageChunk(path="skip.bin", size=3, data=b"toolong"),
           pb.PackageChunk(path="keep.bin", size=0)]
    stream = incoming_files(iter(bad), max_total=100)
    next(stream)
    with pytest.raises(ProtocolError, match="longer than its 3 bytes"):
        next(stream)


def test_the_byte_budget_is_checked_before_the_bytes_arrive() -> None:
    chunks = iter([pb.PackageChunk(path="x", size=101)])
    with pytest.raises(ResourceLimitError, match="over the limit of 100"):
        next(incoming_files(chunks, max_total=100))


def test_write_file_refuses_a_wrong_sha256_and_leaves_nothing(tmp_path: Path) -> None:
    chunks = iter([pb.PackageChunk(path="m", size=3, sha256="0" * 64, data=b"abc")])
    (file,) = incoming_files(chunks, max_total=3)
    with pytest.raises(ProtocolError, match="sha256 mismatch"):
        write_file(file, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["plan.yaml", "init.keras", "a" * 128, "x.tar.gz"])
def test_plain_file_names_pass(name: str) -> None:
    assert check_file_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "a..b", "a\x00",
                                  "a" * 129, "/etc/passwd"])
def test_unsafe_file_names_are_refused(name: str) -> None:
    with pytest.raises(ProtocolError, match="unsafe file name"):
        check_file_name(name)
