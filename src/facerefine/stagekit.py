"""Entry-point plumbing shared by the ``stages/*.py`` scripts."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from facerefine import numerics
from facerefine.config import ParamsError
from facerefine.data.shards import ShardError
from facerefine.names import NamesFileError

# Errors whose message already says what and where: no traceback needed.
USER_ERRORS = (ParamsError, NamesFileError, ShardError, FileNotFoundError)


def run_stage(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if "torch" in sys.modules:  # every stage that computes with torch loads it at module level
        numerics.pin_torch()
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: complete shards/checkpoints are kept; re-run to resume", file=sys.stderr)
        sys.exit(130)
