"""Tracking: logs to a local SQLite store, survives a dead server, never logs secrets."""

import socket
import time
import warnings

import pytest

from facerefine import tracking


@pytest.fixture
def tracked(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEREFINE_TRACKING", "1")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("FACEREFINE_TRACKING_FLUSH", "inline")  # no detached flusher in tests
    return tmp_path


def test_flatten_drops_secret_keys():
    flat = tracking.flatten({"a": {"b": 1, "hf_token": "x"}, "API_KEY": "y", "password": "z", "c": 2})
    assert flat == {"a.b": 1, "c": 2}


def test_stage_run_logs_to_sqlite_at_dvc_root(tracked, monkeypatch):
    import mlflow

    monkeypatch.setenv("DVC_EXP_NAME", "exp-123")
    with tracking.stage_run("prompts", params={"seed": 1, "hf_token": "secret"}, profile="smoke") as run:
        assert run.active
        run.log_metrics({"kept": 5, "split": {"train": 4}, "note": "text is skipped"})
    assert (tracked / "mlflow.db").is_file()
    mlflow.set_tracking_uri(tracking.tracking_uri())
    runs = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT], output_format="list")
    assert len(runs) == 1
    r = runs[0]
    assert r.data.params == {"seed": "1"}
    logged = {k: v for k, v in r.data.metrics.items() if not k.startswith("resources.")}
    assert logged == {"kept": 5.0, "split.train": 4.0}
    # every run ends with its wall time and peak memory (the rehearsal table reads them)
    assert r.data.metrics["resources.wall_s"] >= 0 and r.data.metrics["resources.peak_rss_mb"] > 0
    assert r.data.tags["stage"] == "prompts" and r.data.tags["dvc_exp_name"] == "exp-123"
    assert r.info.run_name == "prompts@exp-123" and r.info.status == "FINISHED"


def test_spooled_run_keeps_steps_times_and_artifacts(tracked, monkeypatch):
    """A stage spools its run; flush() writes it with per-step metrics, the run's own
    start/end times and the artifact as it was at the end of the stage."""
    import mlflow

    monkeypatch.setenv("FACEREFINE_TRACKING_FLUSH", "background")
    monkeypatch.setattr(tracking, "_spawn_flusher", lambda: None)  # flushed below instead
    artifact = tracked / "table.md"
    artifact.write_text("v1")
    with tracking.stage_run("train_unet", params={"lr": 0.1}) as run:
        for epoch in range(3):
            run.log_metrics({"loss": 1.0 / (epoch + 1)}, step=epoch)
        run.log_artifact(artifact)
    ended = time.time() * 1000
    artifact.write_text("v2")  # a later stage rewrites it before the flush
    assert len(list(tracking.spool_dir().iterdir())) >= 1 and not (tracked / "mlflow.db").exists()
    assert tracking.flush() == 1
    mlflow.set_tracking_uri(tracking.tracking_uri())
    r = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT], output_format="list")[0]
    history = mlflow.MlflowClient().get_metric_history(r.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]
    assert r.info.end_time <= ended and r.info.status == "FINISHED" and r.data.params == {"lr": "0.1"}
    local = mlflow.artifacts.download_artifacts(run_id=r.info.run_id, artifact_path="table.md",
                                                dst_path=str(tracked / "dl"))
    assert open(local).read() == "v1"
    assert tracking._pending(tracking.spool_dir()) == []


def test_stage_process_does_not_import_mlflow(tracked):
    """The point of the spool: a stage process pays no MLflow import."""
    import subprocess
    import sys

    code = ("import sys, facerefine.tracking as t\n"
            "t._spawn_flusher = lambda: None\n"
            "with t.stage_run('prompts', params={'a': 1}) as run: run.log_metrics({'x': 1})\n"
            "print('mlflow' in sys.modules)")
    env = {**__import__("os").environ, "FACEREFINE_TRACKING_FLUSH": "background"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
    assert len(tracking._pending(tracking.spool_dir())) == 1


def test_unreachable_server_warns_and_the_stage_goes_on(tracked, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    done = False
    t0 = time.perf_counter()
    with pytest.warns(UserWarning, match="unreachable"):
        with tracking.stage_run("prompts", params={"seed": 1}) as run:
            run.log_metrics({"x": 1})
            done = True
    assert done and not run.active and time.perf_counter() - t0 < 10


def test_failing_tracker_mid_run_disables_itself(tracked):
    class Broken:
        def log_metrics(self, *a, **k):
            raise ConnectionError("server went away")

    run = tracking.Run(Broken())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log_metrics({"x": 1})
        run.log_metrics({"x": 2})  # no second warning, no exception
    assert not run.active and len(caught) == 1


def test_non_main_process_does_not_log(tracked):
    with tracking.stage_run("prompts", enabled=False) as run:
        assert not run.active
    assert not (tracked / "mlflow.db").exists()


def test_tracking_credentials_never_reach_the_spool_on_disk():
    """A URI like https://user:token@host stays in the environment; the record names no secret."""
    from facerefine.tracking import FROM_ENVIRONMENT, _spoolable, _SpooledRun

    assert _spoolable("https://alice:s3cret@mlflow.example:5000") == FROM_ENVIRONMENT
    assert _spoolable("sqlite:////repo/mlflow.db") == "sqlite:////repo/mlflow.db"
    assert _spoolable("http://mlflow.example:5000") == "http://mlflow.example:5000"
    record = _SpooledRun("https://alice:s3cret@mlflow.example:5000", "prompts").record
    assert "s3cret" not in str(record)
