"""Shared test setup: offline, untracked, stand-ins in a per-session folder."""

import os
from pathlib import Path

import pytest

import facerefine  # noqa: F401  before torch: the same pinned numerics as the stages (facerefine.numerics)
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    """Stand-ins go to a session temp dir (never the repo or a user cache); no tracking,
    no hub. Set in os.environ so that stage subprocesses inherit it too."""
    saved = dict(os.environ)
    os.environ["FACEREFINE_HOME"] = str(tmp_path_factory.mktemp("facerefine_home"))
    os.environ["FACEREFINE_TRACKING"] = "0"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    torch.manual_seed(0)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Tests read params.yaml and data/names relative to the repo root."""
    monkeypatch.chdir(REPO)


@pytest.fixture
def one_thread():
    """Tiny nets gain little from a second thread, and on a shared 2-core machine
    oversubscribed OpenMP threads make steps up to 5x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
