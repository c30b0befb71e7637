"""Hugging Face Space entry point: the page of `facerefine demo` (src/facerefine/demo.py), nothing else.

Space variables: FACEREFINE_HEAD (the head selected at start, e.g. a Hub repo id pushed with
`facerefine push`), FACEREFINE_MODEL (schnell weights for the Generate tab). `python app.py
--requirements` rewrites requirements.txt from pyproject.toml.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))  # a Space runs the repository as is, without installing it

from facerefine.demo import DemoConfig, build_app, launch, space_requirements  # noqa: E402

if __name__ == "__main__":
    if sys.argv[1:] == ["--requirements"]:
        (ROOT / "requirements.txt").write_text(space_requirements(ROOT / "pyproject.toml"), encoding="utf-8")
    else:
        os.chdir(ROOT)  # params.yaml and models/heads/ are read from here
        launch(build_app(DemoConfig(head=os.environ.get("FACEREFINE_HEAD"), model=os.environ.get("FACEREFINE_MODEL"))))
