"""The committed *_pb2 modules must be exactly what `make proto` generates from the .proto files."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfl_like.protocol import generate

pytest.importorskip("grpc_tools")


def test_generated_modules_match_proto_files(tmp_path: Path) -> None:
    written = generate.generate(tmp_path)
    assert written, "no .proto files found"
    drift = [
        path.name
        for path in written
        if (generate.PACKAGE_DIR / path.name).read_text(encoding="utf-8")
        != path.read_text(encoding="utf-8")
    ]
    suffixes = generate.GENERATED_SUFFIXES
    committed = {p.name for p in generate.PACKAGE_DIR.iterdir() if p.name.endswith(suffixes)}
    stale = sorted(committed - {p.name for p in written})
    assert not drift, f"regenerate with `make proto`: {drift} differ from the .proto files"
    assert not stale, f"generated modules without a .proto file: {stale}"


def test_generated_modules_import_each_other_by_package_path() -> None:
    for path in generate.PACKAGE_DIR.glob("*_pb2*.py"):
        text = path.read_text(encoding="utf-8")
        assert "\nimport base_pb2" not in text and "protocol.proto import" not in text, path.name
