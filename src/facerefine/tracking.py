"""Experiment tracking: one MLflow run per stage run.

Store: ``$MLFLOW_TRACKING_URI`` if set, else SQLite at the repository root
(``sqlite:///$DVC_ROOT/mlflow.db``; DVC sets ``DVC_ROOT`` so queued
experiments, which run in temp copies, log into the main repo's store).

Tracking never breaks the pipeline: an unreachable or failing tracker gives
one warning and the stage goes on. Only the main process logs. Keys that look
like secrets are never logged.

Why runs are spooled: importing MLflow and opening its SQLAlchemy store costs
about 4 s of CPU per process (``import mlflow`` ~2.3 s, SQLAlchemy/alembic and
MLflow's ORM models ~1.5 s), paid by each of the ~28 stage processes of a smoke
``dvc repro``: about a quarter of its time on a 2-core machine. So a stage never
imports MLflow. It buffers its run (tags, params, metrics with their step and
time, artifacts copied) and at the end writes one record to a spool folder
(``$DVC_ROOT/.facerefine/mlflow-spool``). A detached flusher process
(``python -m facerefine.tracking``) writes spooled records to MLflow with
``log_batch``, keeping each run's own start and end times, and stays a while
for the next stage's record, so one MLflow import serves a whole burst of
stages. ``FACEREFINE_TRACKING_FLUSH=inline`` writes at the end of the stage
instead; :func:`flush` drains the spool on demand (before reading runs back).
A record MLflow refuses goes to ``failed/`` and the reason to ``flush.log``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from facerefine import numerics

log = logging.getLogger(__name__)

EXPERIMENT = "facerefine"
_SECRET = re.compile(r"token|secret|password|passwd|credential|api[_-]?key|auth", re.IGNORECASE)


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def spool_dir() -> Path:
    """Spooled runs; under the repo's gitignored .facerefine so that queued experiments
    (temp copies, DVC_ROOT set) spool into the main repo too."""
    return repo_root() / ".facerefine" / "mlflow-spool"


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
                      "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
                      **{f"numerics.{k}": v for k, v in numerics.settings().items()}})
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
            run._safe("end_run", lambda: run._mlflow.end_run(status=status))


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
    exp = os.environ.get("DVC_EXP_NAME")
    return Run(_SpooledRun(uri, f"{stage}@{exp}" if exp else stage))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


# A tracking URI with credentials in it (https://user:token@host) is not written to the spool
# on disk: the record says so, and the flusher, started from the stage, takes it from its
# own environment (MLFLOW_TRACKING_URI).
FROM_ENVIRONMENT = "environment"


def _spoolable(uri: str) -> str:
    parsed = urlparse(uri)
    return FROM_ENVIRONMENT if parsed.username or parsed.password else uri


class _SpooledRun:
    """What a stage hands to :class:`Run` in place of the mlflow module: the same calls,
    buffered in memory, written as one spool record by ``end_run``."""

    def __init__(self, uri: str, run_name: str):
        # The source tags MLflow's fluent start_run would add from its context providers.
        tags = {"mlflow.user": _user(), "mlflow.source.name": sys.argv[0] if sys.argv else "",
                "mlflow.source.type": "LOCAL"}
        self.record: dict[str, Any] = {"uri": _spoolable(uri), "run_name": run_name, "start_ms": _now_ms(),
                                       "tags": tags, "params": {}, "metrics": []}
        self.artifacts: list[Path] = []

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.record["tags"].update(tags)
        if "git_commit" in tags:
            self.record["tags"]["mlflow.source.git.commit"] = tags["git_commit"]

    def log_params(self, params: Mapping[str, str]) -> None:
        self.record["params"].update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        ts = _now_ms()
        self.record["metrics"].extend([key, value, ts, step or 0] for key, value in metrics.items())

    def log_artifact(self, path: str) -> None:
        self.artifacts.append(Path(path))

    def end_run(self, status: str = "FINISHED") -> None:
        self.record.update(status=status, end_ms=_now_ms())
        spool = spool_dir()
        spool.mkdir(parents=True, exist_ok=True)
        name = f"{self.record['start_ms']}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = spool / f".{name}.tmp"  # renamed when complete: the flusher never sees half a record
        (tmp / "artifacts").mkdir(parents=True)
        # Copied now: a later stage may overwrite the file before the flusher gets to it.
        for i, path in enumerate(self.artifacts):
            shutil.copy2(path, tmp / "artifacts" / f"{i}-{path.name}")
        (tmp / "run.json").write_text(json.dumps(self.record), encoding="utf-8")
        os.replace(tmp, spool / name)
        if os.environ.get("FACEREFINE_TRACKING_FLUSH", "background") == "inline":
            flush()
        else:
            _spawn_flusher()


def _spawn_flusher() -> None:
    """A detached flusher: no pipes shared with DVC (which would wait for them), own session."""
    # The flusher imports this very facerefine, wherever the stage found it.
    here = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    with open(spool_dir() / "flush.log", "ab") as log_file:
        subprocess.Popen([sys.executable, "-m", "facerefine.tracking"], cwd=repo_root(), env=env,
                         stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                         start_new_session=True, close_fds=True)


def _pending(spool: Path) -> list[Path]:
    return sorted(p for p in spool.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "failed")


def flush(linger: float = 0.0, wait: bool = True) -> int:
    """Write every spooled run to MLflow; returns how many. One process at a time (file
    lock); ``wait=False`` returns at once if another flusher holds it (that one rescans
    before it exits). ``linger``: keep polling that many seconds after the spool empties,
    so that the next stage's record reuses this process's MLflow."""
    from filelock import FileLock, Timeout

    spool = spool_dir()
    if not spool.is_dir():
        return 0
    done = 0
    while True:
        try:
            with FileLock(str(spool / ".lock"), timeout=-1 if wait else 0):
                idle_since = time.monotonic()
                while True:
                    pending = _pending(spool)
                    for record in pending:
                        done += _flush_record(record)
                    if pending:
                        idle_since = time.monotonic()
                    elif time.monotonic() - idle_since >= linger:
                        break
                    else:
                        time.sleep(0.5)
        except Timeout:
            return done
        # A record spooled between the last scan and the release would wait for the next
        # stage: look once more.
        if not _pending(spool):
            return done
        wait = False


_clients: dict[str, Any] = {}


def _flush_record(record: Path) -> int:
    try:
        _log_record(json.loads((record / "run.json").read_text(encoding="utf-8")), record / "artifacts")
    except Exception as err:  # keep the record for a look; never loop on it
        log.warning("MLflow refused spooled run %s (%s: %s); kept in failed/", record.name,
                    type(err).__name__, err)
        failed = record.parent / "failed"
        failed.mkdir(exist_ok=True)
        os.replace(record, failed / record.name)
        return 0
    shutil.rmtree(record, ignore_errors=True)
    return 1


def _log_record(rec: Mapping[str, Any], artifacts: Path) -> None:
    """One spooled run into MLflow: the run's own times, everything else in log_batch calls."""
    # Keep a flaky server from stalling the flusher for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = tracking_uri() if rec["uri"] == FROM_ENVIRONMENT else rec["uri"]
    if uri not in _clients:
        _clients[uri] = MlflowClient(uri)
    client = _clients[uri]
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        artifacts_uri = (repo_root() / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
        experiment_id = client.create_experiment(EXPERIMENT, artifact_location=artifacts_uri)
    else:
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id, start_time=rec["start_ms"], tags=rec["tags"], run_name=rec["run_name"])
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in rec["params"].items()]
    metrics = [Metric(k, v, ts, step) for k, v, ts, step in rec["metrics"]]
    # MLflow's log_batch limits: 100 params, 1000 metrics per call.
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    for path in sorted(artifacts.iterdir(), key=lambda p: int(p.name.split("-", 1)[0])):
        named = artifacts / path.name.split("-", 1)[1]  # back to the file's own name
        os.replace(path, named)
        client.log_artifact(run_id, str(named))
    client.set_terminated(run_id, status=rec["status"], end_time=rec["end_ms"])


if __name__ == "__main__":
    # The detached flusher a stage starts; lingers so that one MLflow import serves a burst of stages.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")  # flush.log: problems only
    flush(linger=float(os.environ.get("FACEREFINE_TRACKING_LINGER", "30")), wait=False)
