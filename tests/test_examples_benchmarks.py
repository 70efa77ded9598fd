"""`benchmarks/time_to_solve.py` still runs: its TF1 graph (a subprocess under
TF_USE_LEGACY_KERAS=1) and the example, at a tiny T; and
`benchmarks/drnn_mask_speed.py`'s smoke run. No timing is asserted."""
import json
import subprocess
import sys

from tests.test_examples import REPO_ROOT, script_environment


def _run(argv, timeout=600):
    completed = subprocess.run([sys.executable] + argv, cwd=REPO_ROOT, env=script_environment(),
                               capture_output=True, text=True, timeout=timeout, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def test_time_to_solve_runs_both_programs(tmp_path):
    results_path = tmp_path / "results.json"
    output = _run(["benchmarks/time_to_solve.py", "--time_steps=10", "--max_steps=100",
                   f"--json={results_path}"])
    # The example's kernels were built or loaded before any run was timed.
    (kernels,) = [line for line in output.splitlines() if "IndRNN C++ kernels:" in line]
    assert kernels.startswith("# IndRNN C++ kernels: loaded in "), kernels
    assert output.index(kernels) < output.index('{"run": "tf1"')
    results = json.loads(results_path.read_text())
    assert [result["run"] for result in results] == ["tf1", "example"]
    for result in results:
        # Each printed its first 100-step window, timed from its start.
        assert result["steps"] == 100 and result["seconds"] > 0, result
        assert result["load_before"] >= 0


def test_mask_speed_benchmark_times_its_three_models():
    output = _run(["benchmarks/drnn_mask_speed.py", "--quick", "--cells", "LSTM"])
    assert "# CPU:" in output and "load average" in output
    (row,) = [line for line in output.splitlines() if line.startswith("| LSTM |")]
    assert row.count("/") == 3 and "x the padded" in row, row
