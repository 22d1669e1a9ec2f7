"""Trackers: `mlflow` (the default) and `none`.

Contract (kind `tracker`): `build(ctx)` -> a `lyra_core.interfaces.Tracker`. The trainer wraps it
in `SafeTracker`, so a tracker may raise: training goes on and metrics stay in the run directory.
The `mlflow` tracker also finds the run directory of an MLflow run id, so a model loads by it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import attrs

from lyra_core import BuildContext, LyraError, hookimpl, param
from lyra_core.interfaces import RUN_DIR_TAG, Tracker

DEFAULT_URI = "sqlite:///mlflow.db"
MAX_PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the tag MLflow's UI picks its view by
MODEL_TRAINING = "custom_model_development"  # its "Machine learning" view, not the GenAI one
RUN_ID = re.compile(r"[0-9a-f]{32}")  # what an MLflow run id looks like
# MLflow 3's UI picks its view from the page address (else the last one chosen, GenAI at first).
UI_VIEW = "workflowType=machine_learning"
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
QUIET_LOGGERS = ("mlflow", "alembic")  # MLflow's import resets their levels


def _mlflow_client(uri: str) -> Any:
    """An `MlflowClient`, keeping any level the application set on MLflow's loggers."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    from mlflow.tracking import MlflowClient

    for logger, level in zip(loggers, levels, strict=True):
        if level > logging.INFO:
            logger.setLevel(level)
    return MlflowClient(tracking_uri=uri)


class MLflowTracker(Tracker):
    """One MLflow run per Lyra run directory: a resume continues it, each step logged once."""

    def __init__(self, uri: str, experiment: str | None, timeout: int):
        # Fail fast instead of MLflow's default minutes of retries when a server is down.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout))
        self.uri = uri
        self.experiment = experiment
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.logged: dict[str, int] = {}  # metric -> last step already in a resumed run
        self.params: dict[str, str] = {}  # a resumed run's params (MLflow refuses changes)

    @functools.cached_property
    def client(self) -> Any:
        """The MLflow client, made (and MLflow imported) when first used."""
        return _mlflow_client(self.uri)

    def start(self, name: str, tags: dict[str, str]) -> str:
        exp_id = self.experiment_id = self._experiment_id(self.experiment or name)
        previous = self._previous_run(exp_id, tags.get(RUN_DIR_TAG))
        if previous is None:
            self.run_id = self.client.create_run(exp_id, run_name=name, tags=tags).info.run_id
            return self.run_id
        self.run_id = previous.info.run_id
        self.params = dict(previous.data.params)
        self.logged = {k: self._last_step(k) for k in previous.data.metrics}
        self.client.update_run(self.run_id, status="RUNNING")
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)
        return self.run_id

    def _experiment_id(self, experiment: str) -> str:
        """The experiment's id; one Lyra creates is tagged as model training for MLflow's UI."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return self.client.create_experiment(
                experiment, tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING}
            )
        if EXPERIMENT_KIND_TAG not in found.tags:
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return found.experiment_id

    def _previous_run(self, exp_id: str, run_dir: str | None) -> Any:
        """The experiment's newest run tagged with this run directory, if any."""
        if not run_dir or "'" in run_dir:  # a quote cannot be written in MLflow's filter
            return None
        runs = self.client.search_runs(
            [exp_id],
            filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def _last_step(self, key: str) -> int:
        assert self.run_id is not None
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=-1)

    def log_params(self, params: dict[str, str]) -> None:
        """New params; a resumed run's changed ones (e.g. more steps) become `param.KEY` tags."""
        from mlflow.entities import Param, RunTag

        fresh = {k[:250]: v[:6000] for k, v in params.items()}
        changed = {k: v for k, v in fresh.items() if k in self.params and self.params[k] != v}
        items = [Param(k, v) for k, v in sorted(fresh.items()) if k not in self.params]
        tags = [RunTag(f"param.{k}", v) for k, v in sorted(changed.items())]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        for i in range(0, len(tags), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=tags[i : i + MAX_PARAMS_PER_BATCH])
        self.params |= {k: v for k, v in fresh.items() if k not in self.params}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Metrics of a step; after a resume, the steps the run already holds are skipped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if step > self.logged.get(k, -1)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def run_dir(self, run_id: str) -> Path | None:
        """The run directory an MLflow run points to through its `lyra.run_dir` tag."""
        if not RUN_ID.fullmatch(run_id):
            return None
        uri = self.uri
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
            raise LyraError(
                f"--run {run_id}: looks like an MLflow run id, but there is no MLflow store at "
                f"{uri} (set --tracking-uri or MLFLOW_TRACKING_URI)"
            )
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:
            raise LyraError(f"MLflow run {run_id}: not found in {uri} ({exc.message})") from exc
        except SQLAlchemyError as exc:  # a file that is not an MLflow database
            first = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
            raise LyraError(
                f"--tracking-uri {uri}: not a readable MLflow store ({first})"
            ) from None
        run_dir = run.data.tags.get(RUN_DIR_TAG)
        if not run_dir:
            raise LyraError(
                f"MLflow run {run_id} has no '{RUN_DIR_TAG}' tag: not a Lyra training run"
            )
        return Path(run_dir)

    def page(self, base: str) -> str:
        """The run's page on the MLflow UI at `base`, in its model-training view."""
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}?{UI_VIEW}"

    def describe(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            return f"MLflow run {self.run_id}: {self.page(self.uri)}"
        return (
            f"MLflow run {self.run_id}; open it with: mlflow ui --backend-store-uri {self.uri}\n"
            f"  then {self.page(LOCAL_UI)}"
        )


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
