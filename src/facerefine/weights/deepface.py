"""DeepFace's networks: Age, Gender and Race (Table 1) and ArcFace (identity, Fig. 3).

DeepFace (>= 0.0.100) runs on its pytorch backend when DEEPFACE_BACKEND_ENGINE=pytorch
(deepface.commons.backend_utils, resolved once per process and cached) and each model's
load_model() reads ``$DEEPFACE_HOME/.deepface/weights/<file>.pth`` (DEEPFACE_HOME defaults to
the user's home), downloading it with gdown only when the file is missing
(deepface.commons.weight_utils.download_weights_if_necessary).

A deepface spec is ``pretrained`` (DeepFace's own loading: $DEEPFACE_HOME or ~/.deepface),
``smoke`` (random stand-ins of the same architectures, saved under the stand-in folder with
the file names DeepFace expects, so its loader finds them and never downloads), or a
directory to use as DEEPFACE_HOME. Models are built by DeepFace itself
(modeling.get_model_class(...)()).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch

from facerefine.config import RANDOM, SMOKE
from facerefine.weights.standins import build_once

PRETRAINED = "pretrained"
DeepFaceModel = Literal["Age", "Gender", "Race", "ArcFace"]

# name -> (DeepFace task, module of its pytorch implementation: base_model(), WEIGHTS_URL)
DEEPFACE_MODELS: dict[str, tuple[str, str]] = {
    "Age": ("facial_attribute", "deepface.models.demography.pytorch.Age"),
    "Gender": ("facial_attribute", "deepface.models.demography.pytorch.Gender"),
    "Race": ("facial_attribute", "deepface.models.demography.pytorch.Race"),
    "ArcFace": ("facial_recognition", "deepface.models.facial_recognition.pytorch.ArcFace"),
}
# Every DeepFace detector but "skip" fetches weights (even opencv 5 downloads its cascades),
# and the smoke stand-ins cover none of them.
DEEPFACE_OFFLINE_DETECTORS = ("skip",)
# Bump when _build_deepface_standin changes (standins.STANDIN_VERSION would rebuild every stand-in).
DEEPFACE_STANDIN_REVISION = 1

_deepface_models: dict[tuple[str, str], object] = {}


def deepface_weight_file(name: str) -> str:
    """The file DeepFace's loader looks for: the last part of its first weights URL
    (the rule deepface.commons.weight_utils itself applies)."""
    import importlib

    urls = importlib.import_module(DEEPFACE_MODELS[name][1]).WEIGHTS_URL
    return (urls if isinstance(urls, str) else urls[0]).rsplit("/", 1)[-1]


def _build_deepface_standin(out: Path) -> None:
    """Seeded random Age/Gender/Race (VGG-Face trunk) and ArcFace (ResNet34) networks from
    DeepFace's own classes, saved as ``.deepface/weights/<file>.pth`` under ``out``.

    Stored as float16 to halve the ~1.75 GB a float32 copy of three VGG-Face trunks takes;
    DeepFace's load_state_dict casts them into its float32 parameters.
    """
    import importlib

    weights_dir = out / ".deepface" / "weights"
    weights_dir.mkdir(parents=True)
    for seed, (name, (_, module_name)) in enumerate(DEEPFACE_MODELS.items()):
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream alone
            torch.manual_seed(seed)
            net = importlib.import_module(module_name).base_model()
        state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
        torch.save(state, weights_dir / deepface_weight_file(name))


def deepface_home(spec: str) -> Path | None:
    """DEEPFACE_HOME for a spec; None means DeepFace's default ($DEEPFACE_HOME or ~)."""
    if spec in (SMOKE, RANDOM):  # the stand-ins are DeepFace's own full-size architectures
        return build_once(f"deepface-r{DEEPFACE_STANDIN_REVISION}", _build_deepface_standin)
    if spec == PRETRAINED:
        return None
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"models.deepface: '{spec}' is neither 'pretrained', 'smoke' nor a directory "
            "(a directory is used as DEEPFACE_HOME: weights in <dir>/.deepface/weights/)")
    return path.resolve()


def deepface_detector(spec: str, detector: str) -> str:
    """The DeepFace detector_backend to use; refuses one that would download under smoke."""
    from facerefine.config import ParamsError

    if spec in (SMOKE, RANDOM) and detector not in DEEPFACE_OFFLINE_DETECTORS:
        raise ParamsError(
            f"face_detector: '{detector}' needs pretrained detector weights, which the smoke "
            f"stand-ins do not include; use one of {', '.join(DEEPFACE_OFFLINE_DETECTORS)} with "
            "models.deepface: smoke")
    return detector


def _deepface_pytorch_engine() -> None:
    """Make DeepFace pick its pytorch backend. It caches the choice the first time any model
    or detector is built, and the variable stays set so that retina-face (which reads it
    too) agrees."""
    from deepface.commons import backend_utils

    os.environ.setdefault(backend_utils.BACKEND_ENGINE_ENV_VAR, backend_utils.PYTORCH)
    engine = backend_utils.get_backend_engine()
    if engine != backend_utils.PYTORCH:
        raise RuntimeError(
            f"DeepFace runs on its '{engine}' backend in this process; facerefine needs 'pytorch' "
            f"(unset {backend_utils.BACKEND_ENGINE_ENV_VAR} or set it to pytorch)")


@contextmanager
def deepface_environment(spec: str) -> Iterator[None]:
    """Run DeepFace calls that may load weights (models, detectors) against the spec's
    weights: DeepFace's pytorch backend, and DEEPFACE_HOME pointed at the spec's folder for
    the duration only (the user's own setting comes back after). ``pretrained`` leaves
    DEEPFACE_HOME alone and creates DeepFace's folder as ``from deepface import DeepFace``
    would."""
    home = deepface_home(spec)
    _deepface_pytorch_engine()
    if home is None:
        from deepface.commons import folder_utils

        folder_utils.initialize_folder()
        yield
        return
    saved = os.environ.get("DEEPFACE_HOME")
    os.environ["DEEPFACE_HOME"] = str(home)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("DEEPFACE_HOME", None)
        else:
            os.environ["DEEPFACE_HOME"] = saved


def load_deepface(spec: str, name: DeepFaceModel):
    """DeepFace's own client for ``name`` (e.g. ApparentAgeClient, ArcFaceClient), built by
    DeepFace from the weights the spec names. Cached per (weights home, model)."""
    home = deepface_home(spec)
    key = (str(home) if home else f"{PRETRAINED}:{os.environ.get('DEEPFACE_HOME', '~')}", name)
    if key not in _deepface_models:
        from deepface.modules import modeling

        with deepface_environment(spec):
            client = modeling.get_model_class(task=DEEPFACE_MODELS[name][0], model_name=name)()
        # DeepFace's torch clients permute NHWC arrays to NCHW views, i.e. channels_last
        # strides; weights in the same layout skip a conversion per conv: 1.1-1.5x faster
        # VGG-Face forwards on a CPU (the diversity stage's main cost). Same maths; the
        # last float bits may differ from the default layout.
        if isinstance(getattr(client, "model", None), torch.nn.Module):
            client.model = client.model.to(memory_format=torch.channels_last)
        _deepface_models[key] = client
    return _deepface_models[key]

