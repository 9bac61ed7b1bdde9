"""A numpy split model (linear bottom, softmax top) with the halves' interface of
``vertical.training``, so the parties' protocol is tested fast and without TensorFlow."""

from __future__ import annotations

import numpy as np


class NumpyFollower:
    def __init__(self, features: int, dim: int, lr: float = 0.5, seed: int = 1) -> None:
        self.w = np.random.default_rng(seed).normal(0, 0.1, (features, dim)).astype(np.float32)
        self.lr = lr
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        return x @ self.w

    def backward(self, gradient: np.ndarray) -> None:
        assert self._x is not None
        self.w -= self.lr * (self._x.T @ gradient)
        self._x = None

    def embed(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w

    def state(self) -> dict[str, np.ndarray]:
        return {"model/0000": self.w.copy()}

    def restore(self, arrays: dict[str, np.ndarray], *, source: str) -> None:
        self.w = arrays["model/0000"].copy()


class NumpyLeader:
    def __init__(self, features: int, dim: int, classes: int = 10, lr: float = 0.5,
                 seed: int = 2) -> None:
        rng = np.random.default_rng(seed)
        self.v = rng.normal(0, 0.1, (features + dim, classes)).astype(np.float32)
        self.lr = lr
        self.dim = dim

    def _probs(self, x: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.concatenate([x, e], axis=1)
        logits = z @ self.v
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z, p / p.sum(axis=1, keepdims=True)

    def train_step(self, x: np.ndarray, y: np.ndarray, embedding: np.ndarray
                   ) -> tuple[float, int, np.ndarray]:
        z, p = self._probs(x, embedding)
        n = y.size
        loss = float(-np.log(p[np.arange(n), y] + 1e-9).mean())
        d = p.copy()
        d[np.arange(n), y] -= 1
        d /= n
        grad_z = d @ self.v.T
        self.v -= self.lr * (z.T @ d)
        correct = int((p.argmax(axis=1) == y).sum())
        return loss, correct, grad_z[:, -self.dim:].astype(np.float32)

    def predict(self, x: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        return self._probs(x, embedding)[1].argmax(axis=1)

    def state(self) -> dict[str, np.ndarray]:
        return {"model/0000": self.v.copy()}

    def restore(self, arrays: dict[str, np.ndarray], *, source: str) -> None:
        self.v = arrays["model/0000"].copy()
