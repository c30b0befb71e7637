#!/usr/bin/env python3
"""Print the stages whose outputs are all committed to git (`cache: false`), one per line.

On a fresh clone `dvc repro` skips them: their outputs came with the clone and their deps
match dvc.lock. CI forces them to run so that the clean-tree check also covers what they
write (evaluate, benchmark, report, ...), not only the stages whose outputs live in the DVC
cache.
"""

from dvc.repo import Repo

with Repo() as repo:
    for stage in repo.index.stages:
        if stage.outs and not any(out.use_cache for out in stage.outs):
            print(stage.addressing)
