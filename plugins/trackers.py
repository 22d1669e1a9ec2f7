"""Trackers: `mlflow` (the default) and `none`.

Contract (kind `tracker`): `build(ctx)` -> a `lyra_core.runs.tracking.Tracker`. The trainer wraps it
in `SafeTracker`, so a tracker may raise: training goes on and metrics stay in the run directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs

from lyra_core import BuildContext, hookimpl, param
from lyra_core.runs.tracking import Tracker

DEFAULT_URI = "sqlite:///mlflow.db"
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call


class MLflowTracker(Tracker):
    def __init__(self, uri: str, experiment: str | None, timeout: int):
        # Fail fast instead of MLflow's default minutes of retries when a server is down.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=uri)
        self.run_id: str | None = None

    def start(self, name: str, tags: dict[str, str]) -> str:
        experiment = self.experiment or name
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
        run = self.client.create_run(exp_id, run_name=name, tags=tags)
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def describe(self) -> str:
        where = f"--backend-store-uri {self.uri}" if not self.uri.startswith("http") else ""
        ui = f"mlflow ui {where}".strip() if where else self.uri
        return f"MLflow run {self.run_id}; open it with: {ui}"


@attrs.frozen(kw_only=True)
class MLflowSpec:
    """MLflow tracking: a local SQLite store by default, or a server (`uri`)."""

    uri: str | None = param(
        None, doc=f"tracking URI; default: $MLFLOW_TRACKING_URI, else {DEFAULT_URI} here"
    )
    experiment: str | None = param(None, doc="MLflow experiment name (default: the spec's name)")
    timeout: int = param(10, doc="seconds before a request to a tracking server gives up")

    def build(self, ctx: BuildContext) -> Tracker:
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
        return MLflowTracker(uri, self.experiment, self.timeout)


@attrs.frozen(kw_only=True)
class NoTrackerSpec:
    """No tracking beyond the run directory's metrics.jsonl."""

    def build(self, ctx: BuildContext) -> Tracker:
        return Tracker()


@hookimpl
def lyra_register_components(registry) -> None:
    registry.add("tracker", "mlflow", MLflowSpec)
    registry.add("tracker", "none", NoTrackerSpec)
