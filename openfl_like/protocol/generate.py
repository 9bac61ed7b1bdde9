"""Regenerate the committed ``*_pb2`` modules from ``proto/*.proto`` (``make proto``).

Usage: ``python -m openfl_like.protocol.generate [OUTPUT_DIR]`` (default: this package's folder).

The .proto files are compiled under their repository path (``openfl_like/protocol/proto/x.proto``)
so their names are unique in protobuf's global descriptor pool; protoc then emits imports of
``openfl_like.protocol.proto.x_pb2``, which this script rewrites to ``openfl_like.protocol.x_pb2``
where the generated modules live. Needs grpcio-tools (a dev dependency).
"""

from __future__ import annotations

import importlib.resources
import re
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_DIR = PACKAGE_DIR / "proto"
REPO_ROOT = PACKAGE_DIR.parent.parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

_PROTO_PACKAGE = "openfl_like.protocol.proto"
_TARGET_PACKAGE = "openfl_like.protocol"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def _fix_imports(text: str) -> str:
    """Point generated imports at ``openfl_like.protocol`` (also repairs bare ``import x_pb2``)."""
    text = text.replace(f"from {_PROTO_PACKAGE} import ", f"from {_TARGET_PACKAGE} import ")
    text = re.sub(
        r"^import (\w+_pb2)( as \w+)?$",
        lambda m: f"from {_TARGET_PACKAGE} import {m.group(1)}{m.group(2) or ''}",
        text,
        flags=re.MULTILINE,
    )
    # .pyi files refer to sibling modules by their full dotted path
    return text.replace(f"{_PROTO_PACKAGE}.", f"{_TARGET_PACKAGE}.")


def generate(output_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Compile every .proto into ``output_dir``; return the files written."""
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    sources = [str(p.relative_to(REPO_ROOT)) for p in proto_files()]
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        # protoc runs in its own process: loaded in-process beside another protobuf user
        # (TensorFlow, in a test session) it can crash the whole interpreter.
        args = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{REPO_ROOT}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *sources,
        ]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"protoc failed ({done.returncode}): {done.stderr.strip()}")
        emitted = Path(tmp) / Path(*_PROTO_PACKAGE.split("."))
        output_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(emitted.iterdir()):
            if not path.name.endswith(GENERATED_SUFFIXES):
                continue
            target = output_dir / path.name
            target.write_text(_fix_imports(path.read_text(encoding="utf-8")), encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    output = Path(args[0]) if args else PACKAGE_DIR
    for path in generate(output):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
