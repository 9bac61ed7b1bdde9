"""The experimenter's Python API: the verbs of `fx experiment`, usable from a notebook.

    with Experimenter.connect("127.0.0.1:50060", name="alice", pki_dir="pki") as lab:
        lab.envoys()                                  # who is there, with their datasets
        name = lab.submit("plans/director_digits/experiment")
        for event in lab.metrics(name):               # as they arrive; ends with the experiment
            print(event.round_number, event.task, dict(event.metrics))
        status = lab.wait(name)
        model = lab.keras_model(name, "best")         # a keras.Model, loaded in safe mode

Identity is the experimenter's certificate (CN = name, role experimenter) from the PKI store; the
director lets it see only the experiments it submitted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from openfl_like.app.common import parse_address
from openfl_like.core.errors import ConfigError
from openfl_like.core.experiments import (
    MODEL_CHOICES,
    EventKind,
    ExperimentEvent,
    ExperimentKind,
)
from openfl_like.core.ids import check_name
from openfl_like.pki import PkiStore
from openfl_like.plan.experiment_files import experiment_files
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_client import DirectorClient
from openfl_like.transport.retry import RetryPolicy
from openfl_like.transport.settings import TransportSettings

DEFAULT_DIRECTOR_NAME = "director"
DEFAULT_FEDERATION = "default"


@dataclass(frozen=True)
class DirectorTarget:
    """Where the director is and who we are to it."""

    host: str
    port: int
    name: str  # our experimenter name (certificate CN)
    director_name: str = DEFAULT_DIRECTOR_NAME
    federation: str = DEFAULT_FEDERATION

    @classmethod
    def parse(cls, address: str, name: str, *, director_name: str = DEFAULT_DIRECTOR_NAME,
              federation: str = DEFAULT_FEDERATION) -> DirectorTarget:
        host, port = parse_address(address)
        return cls(host, port, str(check_name(name, "experimenter name")), director_name,
                   federation)


def final_state(status: Mapping[str, Any]) -> bool:
    return str(status.get("state")) in ("finished", "failed", "cancelled", "removed")


class Experimenter:
    """One connection to a director as an experimenter; a context manager."""

    def __init__(self, client: DirectorClient) -> None:
        self._client = client

    @classmethod
    def connect(
        cls, address: str, *, name: str, pki_dir: str | Path = "pki",
        director_name: str = DEFAULT_DIRECTOR_NAME, federation: str = DEFAULT_FEDERATION,
        tls: bool = True, tls_files: TlsFiles | None = None,
        settings: TransportSettings | None = None,
    ) -> Experimenter:
        target = DirectorTarget.parse(address, name, director_name=director_name,
                                      federation=federation)
        settings = settings or TransportSettings.from_mapping({"tls": tls})
        files = None
        if settings.tls:
            files = tls_files or TlsFiles.for_participant(PkiStore(Path(pki_dir)), target.name)
            files.read()  # fail now, naming the missing file
        client = DirectorClient(
            host=target.host, port=target.port, name=target.name,
            director_name=target.director_name, federation_uuid=target.federation,
            tls_files=files, settings=settings,
            retry=RetryPolicy.from_settings(settings.retry),
        )
        return cls(client)

    def __enter__(self) -> Experimenter:
        self._client.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.__exit__(exc_type, exc, tb)

    def close(self) -> None:
        self._client.__exit__(None, None, None)

    # -- the federation ----------------------------------------------------------------------

    def envoys(self) -> list[dict[str, Any]]:
        """Every envoy: name, online, last heartbeat, dataset (contract, sample counts)."""
        return list(self._client.envoys().get("envoys", []))

    def datasets(self) -> Mapping[str, Any]:
        return self._client.dataset_info()

    # -- experiments -------------------------------------------------------------------------

    def submit(self, plan_dir: str | Path, *, model: str | Path | None = None,
               name: str | None = None) -> str:
        """Send the plan (and its initial model) for training; returns the experiment's name."""
        return self._submit(plan_dir, model, name, ExperimentKind.TRAIN)

    def validate(self, plan_dir: str | Path, model: str | Path, *,
                 name: str | None = None) -> str:
        """Evaluate ``model`` on every matching envoy's data, without training."""
        return self._submit(plan_dir, model, name, ExperimentKind.VALIDATE)

    def _submit(self, plan_dir: str | Path, model: str | Path | None, name: str | None,
                kind: ExperimentKind) -> str:
        files = experiment_files(plan_dir, model)
        if kind is ExperimentKind.VALIDATE and len(files) < 2:
            raise ConfigError("a validation experiment needs a model (--model FILE)")
        if name is not None:
            check_name(name, "experiment name")
        return self._client.submit(name or "", kind, files)

    def experiments(self) -> list[dict[str, Any]]:
        return list(self._client.list_experiments().get("experiments", []))

    def status(self, experiment: str) -> Mapping[str, Any]:
        return self._client.experiment_status(experiment)

    def describe(self, experiment: str) -> Mapping[str, Any]:
        return self._client.describe_experiment(experiment)

    def events(self, experiment: str, from_seq: int = 1) -> Iterator[ExperimentEvent]:
        """Every event (metrics, log lines, state changes) in order; ends with the experiment."""
        return self._client.metric_stream(experiment, from_seq)

    def metrics(self, experiment: str, from_seq: int = 1) -> Iterator[ExperimentEvent]:
        """Only the metric events, as they arrive."""
        return (e for e in self.events(experiment, from_seq) if e.kind is EventKind.METRICS)

    def wait(self, experiment: str,
             on_event: Callable[[ExperimentEvent], None] | None = None) -> Mapping[str, Any]:
        """Follow the experiment to its end; returns its final status."""
        for event in self.events(experiment):
            if on_event is not None:
                on_event(event)
        return self.status(experiment)

    def download_model(self, experiment: str, which: str, dest: str | Path) -> Path:
        if which not in MODEL_CHOICES:
            raise ConfigError(f"which model: {which!r} (expected best or last)")
        return self._client.trained_model(experiment, which, Path(dest))

    def keras_model(self, experiment: str, which: str = "best") -> Any:
        """The trained model as a ``keras.Model`` (checked and loaded in safe mode)."""
        from openfl_like.runners.registry import load_native_model

        with tempfile.TemporaryDirectory(prefix="fx-model-") as tmp:
            path = self.download_model(experiment, which, Path(tmp) / f"{which}_model.keras")
            if path.suffix != ".keras":
                raise ConfigError(f"{experiment}: the model is {path.suffix}, not a Keras model")
            return load_native_model("keras", path)

    def cancel(self, experiment: str, reason: str = "") -> Mapping[str, Any]:
        return self._client.cancel_experiment(experiment, reason)

    def remove(self, experiment: str) -> Mapping[str, Any]:
        return self._client.remove_experiment(experiment)
