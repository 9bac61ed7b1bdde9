"""DirectorClient offers exactly the methods of both director ports, with their signatures."""

from __future__ import annotations

import inspect

import pytest

from openfl_like.director.ports import EnvoyDirectorPort, ExperimenterDirectorPort
from openfl_like.transport.director_client import DirectorClient


def _methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if callable(member) and not name.startswith("_")
    }


@pytest.mark.parametrize("port", [EnvoyDirectorPort, ExperimenterDirectorPort])
def test_director_client_satisfies_the_port(port: type) -> None:
    client = _methods(DirectorClient)
    for name, wanted in _methods(port).items():
        assert name in client, f"DirectorClient lacks {name}"
        got = client[name]
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == [
            (p.name, p.kind, p.default) for p in wanted.parameters.values()], name
