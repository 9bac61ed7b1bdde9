"""openfl_like: a federated-learning transport and control plane.

Secure by default (mutual TLS from our own two-tier PKI), streamed models of any size, and a
federation runtime that survives dropped connections and crashes.

From Python (a notebook)::

    import openfl_like
    result = openfl_like.federate(keras_model, {"site_a": (x_a, y_a), "site_b": (x_b, y_b)},
                                  rounds=5, test=(x_test, y_test))
    result.model  # the trained keras.Model; result.history: one record per round

The public names below are imported on first use, so `import openfl_like` (and `fx --help`)
load neither gRPC nor TensorFlow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["FederationResult", "__version__", "federate"]


def __getattr__(name: str) -> Any:
    if name in ("federate", "FederationResult"):
        from openfl_like.app import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'openfl_like' has no attribute {name!r}")
