"""Importing the package stays light: no TensorFlow, no grpc until they are needed."""

from __future__ import annotations

import subprocess
import sys


def test_importing_vertical_loads_neither_tensorflow_nor_grpc() -> None:
    code = ("import sys, openfl_like.vertical as v; v.Communicator; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'grpc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
