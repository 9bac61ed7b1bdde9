"""Typed ids and the participant roles, shared by PKI, transport and federation."""

from __future__ import annotations

import enum
import re
from typing import NewType

from openfl_like.core.errors import ConfigError

ParticipantName = NewType("ParticipantName", str)
FederationId = NewType("FederationId", str)
RoundNumber = NewType("RoundNumber", int)

# A participant name becomes a file name and a certificate CN: keep it to a conservative set.
# Starts with a letter or digit, then letters, digits, '.', '_' or '-', at most 64 characters;
# '..' anywhere is refused so a name can never walk out of a folder.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Role(str, enum.Enum):
    """What a certificate holder is allowed to be. Servers read it from the certificate."""

    AGGREGATOR = "aggregator"
    COLLABORATOR = "collaborator"
    DIRECTOR = "director"
    ENVOY = "envoy"
    EXPERIMENTER = "experimenter"
    OPERATOR = "operator"  # read-only: may call a server's status and health RPCs only
    PARTY = "party"  # one side of a two-party vertical pair: serves its peer and calls it

    @property
    def is_server(self) -> bool:
        return self in (Role.AGGREGATOR, Role.DIRECTOR, Role.PARTY)

    @property
    def is_client(self) -> bool:
        """Calls a server: every role but the two pure servers (a party is both)."""
        return self not in (Role.AGGREGATOR, Role.DIRECTOR)

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise ConfigError(f"unknown role {value!r} (expected one of: {known})") from None

    def __str__(self) -> str:
        return self.value


def check_name(name: str, what: str = "name") -> ParticipantName:
    """Return ``name`` if it is a safe participant name, else raise ConfigError saying why."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit, no '..' and no path separators"
        )
    return ParticipantName(name)
