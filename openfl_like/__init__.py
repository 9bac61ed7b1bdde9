"""openfl_like: a federated-learning transport and control plane.

Secure by default (mutual TLS from our own two-tier PKI), streamed models of any size, and a
federation runtime that survives dropped connections and crashes.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
