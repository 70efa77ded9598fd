"""MIGRATING.md: every TF1 snippet runs in graph mode, every TF2 snippet runs here.

The ```python tf1 blocks run first, in order, in the legacy subprocess of
tests/migration_support.py (TF_USE_LEGACY_KERAS=1); they write the TF1
checkpoints and check arrays that the ```python tf2 blocks load and compare
against. Each TF2 block then runs as written, in a fresh namespace, in the
directory the TF1 blocks wrote to. (The ```python step1 blocks, step one in two
lines, are run by tests/test_migration_original_paths.py.)
"""
import os
import re

import pytest

from tests import migration_support


def _blocks(kind):
    with open(migration_support.GUIDE, encoding="utf-8") as guide:
        return re.findall(rf"^```python {kind}\n(.*?)^```", guide.read(), re.S | re.M)


TF2_BLOCKS = _blocks("tf2")


@pytest.fixture(scope="module")
def tf1(tmp_path_factory):
    return migration_support.tf1_artifacts(str(tmp_path_factory.getbasetemp() / "tf1_graphs"))


def test_the_guide_has_both_steps_for_every_entry_point():
    assert len(_blocks("tf1")) == 4 and len(TF2_BLOCKS) >= 4
    text = open(migration_support.GUIDE, encoding="utf-8").read()
    for entry_point in ("IndRNNCell", "dynamic_rnn", "MultiRNNCell", "dRNN",
                        "multi_dRNN_with_dilations", "_contruct_cells", "_rnn_reformat",
                        "drnn_classification", "load_tf1_checkpoint"):
        assert entry_point in text


def test_every_tf1_block_ran_in_graph_mode(tf1):
    assert tf1.manifest["guide"]["tf1_blocks"] == len(_blocks("tf1"))
    for written in ("addition", "sequential_mnist", "drnn_layers", "drnn_demo"):
        assert os.path.exists(os.path.join(tf1.guide_directory, written, "model.ckpt.index"))


@pytest.mark.parametrize("index", range(len(TF2_BLOCKS)))
def test_tf2_block_runs(tf1, index, monkeypatch):
    monkeypatch.chdir(tf1.guide_directory)
    code = compile(TF2_BLOCKS[index], f"MIGRATING.md tf2 block {index}", "exec")
    exec(code, {"__name__": f"migrating_tf2_{index}"})  # pylint: disable=exec-used
