"""Experiment tracking: one MLflow run per stage run.

Store: ``$MLFLOW_TRACKING_URI`` if set, else SQLite at the repository root
(``sqlite:///$DVC_ROOT/mlflow.db``; DVC sets ``DVC_ROOT`` so queued
experiments, which run in temp copies, log into the main repo's store).

Tracking never breaks the pipeline: an unreachable or failing tracker gives
one warning and the stage goes on. Only the main process logs. Keys that look
like secrets are never logged.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

EXPERIMENT = "facerefine"
_SECRET = re.compile(r"token|secret|password|passwd|credential|api[_-]?key|auth", re.IGNORECASE)


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; secret-looking keys are dropped."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if _SECRET.search(str(key)):
            continue
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _reachable(uri: str, timeout: float = 3.0) -> bool:
    """Fail fast on a dead server instead of MLflow's long retry loop."""
    parsed = urlparse(uri)
    if parsed.scheme not in {"http", "https"}:
        return True
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=repo_root()).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Run:
    """A stage's tracking handle; every method is a no-op once tracking failed."""

    def __init__(self, mlflow_module=None):
        self._mlflow = mlflow_module

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def _safe(self, what: str, fn, *args, **kwargs) -> None:
        if self._mlflow is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception as err:  # tracking must never break a stage
            warnings.warn(f"MLflow {what} failed ({type(err).__name__}: {err}); tracking disabled for this run",
                          stacklevel=3)
            self._mlflow = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
        self._safe("log_params", lambda: self._mlflow.log_params(flat))

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        numeric = {k: float(v) for k, v in flatten(metrics).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._safe("log_metrics", lambda: self._mlflow.log_metrics(numeric, step=step))

    def log_artifact(self, path: str | Path) -> None:
        if Path(path).exists():
            self._safe("log_artifact", lambda: self._mlflow.log_artifact(str(path)))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._safe("set_tags", lambda: self._mlflow.set_tags({k: str(v) for k, v in tags.items()}))


@contextmanager
def stage_run(stage: str, *, params: Mapping[str, Any] | None = None, profile: str = "",
              enabled: bool = True) -> Iterator[Run]:
    """Open one MLflow run for a stage (``enabled=False`` on non-main processes)."""
    run = Run()
    if enabled and os.environ.get("FACEREFINE_TRACKING", "1") != "0":
        run = _start(stage, profile)
    if run.active:
        run.set_tags({"stage": stage, "profile": profile, "git_commit": git_commit(),
                      "dvc_exp_name": os.environ.get("DVC_EXP_NAME", "")})
        if params:
            run.log_params(params)
    status = "FAILED"
    started = time.perf_counter()
    try:
        yield run
        status = "FINISHED"
    finally:
        if run.active:
            run.log_metrics(resource_usage(started))
            run._safe("end_run", run._mlflow.end_run, status=status)


def resource_usage(started: float) -> dict[str, float]:
    """Wall time and peak memory of this process so far: what the rehearsal table reports.
    ru_maxrss is in KiB on Linux; the GPU figure is PyTorch's peak allocation on device 0."""
    import resource
    import sys

    usage = {"resources.wall_s": round(time.perf_counter() - started, 2),
             "resources.peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
             "resources.children_peak_rss_mb": round(
                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}
    torch = sys.modules.get("torch")  # only if the stage imported it; never import it here
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        usage["resources.peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return usage


def _start(stage: str, profile: str) -> Run:
    uri = tracking_uri()
    if not _reachable(uri):
        warnings.warn(f"MLflow tracking server {urlparse(uri).netloc} unreachable; stage goes on untracked",
                      stacklevel=3)
        return Run()
    try:
        # Keep a flaky server from stalling the stage for minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        import mlflow

        mlflow.set_tracking_uri(uri)
        if mlflow.get_experiment_by_name(EXPERIMENT) is None:
            artifacts = None
            if uri.startswith("sqlite:"):
                artifacts = (repo_root() / "mlartifacts").as_uri()
            mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
        mlflow.set_experiment(EXPERIMENT)
        exp = os.environ.get("DVC_EXP_NAME")
        mlflow.start_run(run_name=f"{stage}@{exp}" if exp else stage)
        return Run(mlflow)
    except Exception as err:
        warnings.warn(f"MLflow unavailable ({type(err).__name__}: {err}); stage goes on untracked", stacklevel=3)
        return Run()
