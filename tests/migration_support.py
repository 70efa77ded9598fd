"""Shared plumbing of the migration tests: the TF1 side runs once per session.

`tf1_artifacts(directory)` runs tests/migration_tf1_graphs.py in a subprocess
with the legacy environment (TF_USE_LEGACY_KERAS=1, tf-keras's TF1 cells,
graph mode): it builds the original graphs, saves real TF1 checkpoints and
runs the migration guide's TF1 snippets. Both migration test modules use the
same run (cached by directory).
"""
import functools
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(ROOT, "MIGRATING.md")
SCRIPT = os.path.join(ROOT, "tests", "migration_tf1_graphs.py")


def legacy_environment():
    """The environment of a process that runs TF1 code on TF 2.x."""
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


class TF1Artifacts:
    """What the TF1 run left: checkpoints, arrays and the manifest."""

    def __init__(self, directory):
        self.directory = directory
        self.guide_directory = os.path.join(directory, "guide")
        with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as manifest:
            self.manifest = json.load(manifest)

    def checkpoint(self, case):
        return os.path.join(self.directory, case, "model.ckpt")

    def arrays(self, case, name="arrays"):
        with np.load(os.path.join(self.directory, case, f"{name}.npz")) as arrays:
            return dict(arrays)


@functools.lru_cache(maxsize=None)
def tf1_artifacts(directory):
    """Runs the TF1 graphs and the guide's TF1 snippets once; returns `TF1Artifacts`."""
    result = subprocess.run(
        [sys.executable, SCRIPT, directory, GUIDE, os.path.join(directory, "guide")],
        capture_output=True, text=True, env=legacy_environment(), cwd=ROOT, timeout=900)
    if result.returncode != 0:
        raise RuntimeError("The TF1 graph-mode run failed (it needs tf-keras, in the `test` "
                           f"and `legacy` extras):\n{result.stderr[-6000:]}")
    return TF1Artifacts(directory)
