"""Reproduction report: the papers' experiments, at a scale a CPU runs in under an hour.

1. The adding problem (IndRNN paper, Fig. 2) at T = 100, 500, 1000: the
   original's 2-layer IndRNN against the original's LSTM baseline, the same
   step budget for both at each T; each stops once solved (training MSE of
   a 100-step window < 0.01) or at the budget.
2. Pixel-sequence classification on the offline 8x8 digits (64 steps), plain
   and permuted: the IndRNN sequential-MNIST set-up (examples/sequential_mnist.py)
   and the DilatedRNN demo (examples/permuted_mnist_drnn.py), target >= 97%
   test accuracy.
3. "long" (not in the default --parts, hours on a CPU): the paper's hardest
   adding problem, T = 5000, IndRNN with the initialisation the IndRNN authors
   recommend for long sequences (`--recurrent_init=long`: the last layer's
   recurrent weights near 1, the others uniform(0, max)). Give it a wall-time
   cap with --max_minutes: a capped run is stopped, reported with how far it
   got (steps, last window's MSE), and resumed by the next invocation.

Every run is one of the example scripts, started as a subprocess with its
own log (`--run_dir/<name>.log`) and checkpoints, so re-running this script
resumes unfinished runs and re-reads finished ones (keeping the wall times
measured when they trained). Writes into
`--output_dir`: REPRODUCTION.md (table, commands, paper numbers),
results.json, adding_problem.png and digits.png.

    python benchmarks/reproduce.py                       # everything, < 1 h on 2 cores
    python benchmarks/reproduce.py --parts=adding --adding_time_steps=100
    python benchmarks/reproduce.py --parts=long --max_minutes=240   # T = 5000, resumable
"""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from absl import app
from absl import flags
from absl import logging

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from examples.training import read_history  # pylint: disable=wrong-import-position

PARTS = ("adding", "digits", "long")
DEFAULT_PARTS = ("adding", "digits")
# Predicting the mean of the sum of two U(0, 1) values: its variance, 1/6.
ADDING_CHANCE_MSE = 1 / 6
ADDING_TARGET_MSE = 0.01
DIGITS_TARGET_ACCURACY = 0.97

flags.DEFINE_string("output_dir", os.path.join(REPO_ROOT, "benchmarks", "results"),
                    "Where the table, plots and results.json go.")
flags.DEFINE_string("run_dir", os.path.join(REPO_ROOT, "runs", "reproduce"),
                    "Logs and checkpoints of the runs (re-running resumes them).")
flags.DEFINE_list("parts", list(DEFAULT_PARTS),
                  f"Which experiments to run, from {PARTS} (long: T = 5000, hours).")
flags.DEFINE_list("adding_time_steps", ["100", "500", "1000"],
                  "Sequence lengths of the adding problem.")
flags.DEFINE_list("adding_steps", ["1500", "2000", "2500"],
                  "Step budget of each --adding_time_steps entry (one value: for all), the "
                  "same for IndRNN and LSTM.")
flags.DEFINE_integer("digits_indrnn_steps", 1500, "Step budget of the IndRNN digits runs.",
                     lower_bound=1)
flags.DEFINE_integer("digits_drnn_steps", 1500, "Step budget of the DilatedRNN digits runs.",
                     lower_bound=1)
flags.DEFINE_integer("long_time_steps", 5000, "T of the long adding problem (part long).",
                     lower_bound=2)
flags.DEFINE_integer("long_steps", 20000, "Step budget of the long adding problem.",
                     lower_bound=100)
flags.DEFINE_float("max_minutes", None, "Wall-time cap of each run, in minutes: a run "
                   "still going then is stopped, reported as far as it got, and resumed by "
                   "the next invocation. Default: no cap.", lower_bound=0.1)
FLAGS = flags.FLAGS
LOG_EVERY = 100  # the example scripts' default window

# What the papers report (REFERENCE), for the table.
PAPER = {
    ("adding", "indrnn"): "converges (MSE near 0) at T = 100 ... 5000",
    ("adding", "lstm"): "fails at T = 1000 (stays at the chance MSE ~0.167)",
    ("adding", "indrnn_long"): "converges at T = 5000 (with the init for long sequences; "
                               "the batzner TF1 port did not converge)",
    ("indrnn", False): "MNIST 99.0% (6 layers); TF1 port 98.9%",
    ("indrnn", True): "pMNIST 96.0% (6 layers)",
    ("drnn", False): "MNIST: dilated GRU 99.2% (vanilla RNN not listed)",
    ("drnn", True): "pMNIST: dilated vanilla RNN 96.1% (hidden 50); dilated GRU 94.6%",
}


@dataclasses.dataclass
class Experiment:
    """One run of an example script."""
    name: str
    script: str
    flags: dict
    kind: str          # "adding" or "digits"
    model: str         # "indrnn", "lstm", "drnn"
    setting: dict      # what the table shows (T, permuted...)

    def command(self, run_dir):
        flag_args = [f"--{name}={value}" for name, value in self.flags.items()]
        return [sys.executable, os.path.join("examples", self.script),
                f"--log_dir={os.path.join(run_dir, self.name)}"] + flag_args


def adding_experiments(time_steps_list, budgets):
    """IndRNN and LSTM at each T, with the same budget."""
    experiments = []
    for time_steps, budget in zip(time_steps_list, budgets):
        for cell in ("indrnn", "lstm"):
            experiments.append(Experiment(
                f"adding_T{time_steps}_{cell}", "addition_rnn.py",
                {"time_steps": time_steps, "cell": cell, "max_steps": budget,
                 "target_mse": ADDING_TARGET_MSE},
                "adding", cell, {"T": time_steps, "budget": budget}))
    return experiments


def long_adding_experiment(time_steps, budget):
    """IndRNN at T = 5000 with the authors' initialisation for long sequences."""
    return Experiment(
        f"adding_T{time_steps}_indrnn_long", "addition_rnn.py",
        {"time_steps": time_steps, "cell": "indrnn", "recurrent_init": "long",
         "max_steps": budget, "target_mse": ADDING_TARGET_MSE},
        "adding", "indrnn_long", {"T": time_steps, "budget": budget})


def digits_experiments(indrnn_steps, drnn_steps):
    """IndRNN and DilatedRNN, plain and permuted digits, with the scripts' defaults."""
    experiments = []
    for permute in (False, True):
        suffix = "permuted" if permute else "plain"
        experiments.append(Experiment(
            f"digits_{suffix}_indrnn", "sequential_mnist.py",
            {"dataset": "digits", "permute": permute, "max_steps": indrnn_steps,
             "eval_every": 200},
            "digits", "indrnn", {"permuted": permute, "budget": indrnn_steps}))
        experiments.append(Experiment(
            f"digits_{suffix}_drnn", "permuted_mnist_drnn.py",
            {"dataset": "digits", "permute": permute, "max_steps": drnn_steps,
             "eval_every": 250, "log_every": 50},
            "digits", "drnn", {"permuted": permute, "budget": drnn_steps}))
    return experiments


def load_previous_results(path):
    """The results.json of an earlier invocation ({} if none)."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def keep_earlier_timing(result, previous):
    """A run that was already finished trained nothing now: keep its earlier wall time.

    A run resumed after a wall-time cap adds the time of the capped invocations.
    """
    if result.get("failed") or "wall_seconds" not in previous:
        return result
    if previous.get("capped"):
        result["wall_seconds"] += previous["wall_seconds"]
        result["capped_before"] = True
    elif not result.get("capped") and result["resumed_from"] >= result["steps"]:
        result["wall_seconds"] = previous["wall_seconds"]
    return result


def run_experiment(experiment, run_dir, max_seconds=None):
    """Runs (or resumes) one experiment; returns its JSON result plus timing and history.

    After `max_seconds` the run is stopped (SIGTERM, then SIGKILL) and
    reported from its CSV history: "capped", the steps done, the last
    window's training MSE. Its backup lets the next invocation resume it.
    """
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, f"{experiment.name}.log")
    log_dir = os.path.join(run_dir, experiment.name)
    command = experiment.command(run_dir)
    logging.info("Running %s: %s", experiment.name, " ".join(command))
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log,
                                   text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        try:
            stdout, _ = process.communicate(timeout=max_seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                stdout, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, _ = process.communicate()
            log.write(stdout or "")
            return capped_result(experiment, log_dir, time.time() - started, command)
        log.write(stdout)
    seconds = time.time() - started
    lines = stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        logging.error("%s failed (exit %d); see %s", experiment.name, process.returncode,
                      log_path)
        return {"failed": True, "wall_seconds": seconds}
    result = json.loads(lines[-1])
    with open(os.path.join(log_dir, "history.json"), encoding="utf-8") as file:
        result["history"] = json.load(file)
    result.update(wall_seconds=seconds, command=_shown(command))
    logging.info("%s: %s", experiment.name, {key: value for key, value in result.items()
                                             if key not in ("history", "command")})
    return result


def _shown(command):
    """The command as the report shows it (no --log_dir)."""
    return "python " + " ".join(command[1:2] + [
        argument for argument in command[2:] if not argument.startswith("--log_dir")])


def capped_result(experiment, log_dir, seconds, command):
    """A run stopped at the wall-time cap, reported as far as its history goes."""
    history = read_history(log_dir, int(experiment.flags.get("log_every", LOG_EVERY)))
    last = history[-1] if history else {}
    logging.warning("%s: stopped at the wall-time cap after %.1f min, at step %s.",
                    experiment.name, seconds / 60, last.get("step", 0))
    return {"capped": True, "steps": last.get("step", 0), "train_mse": last.get("loss"),
            "mse": None, "resumed_from": 0, "wall_seconds": seconds, "command": _shown(command),
            "history": history}


# ------------------------------------------------------------------------ report

def _met(value, target):
    return "yes" if value >= target else "**no**"


def _number(value):
    return "—" if value is None else f"{value:.4f}"


def adding_row(experiment, result):
    setting = experiment.setting
    if result.get("failed"):
        return f"| adding, T={setting['T']} | {experiment.model} | — | run failed | | | | |"
    held_out = ("capped: stopped at the wall-time cap" if result.get("capped")
                else f"held-out {result['mse']:.4f}")
    # Solved: the stop criterion, the training MSE of the last 100-step window
    # (5000 sequences, each seen before the update it causes) below 0.01.
    solved = result["train_mse"] is not None and result["train_mse"] < ADDING_TARGET_MSE
    if experiment.model.startswith("indrnn"):
        target, met = f"< {ADDING_TARGET_MSE}", "yes" if solved else "**no**"
    else:  # the baseline has no target: the table says whether it solved the task anyway
        target, met = "baseline", "solved" if solved else "not solved"
    return (f"| adding, T={setting['T']} | {experiment.model} | {result['steps']} / "
            f"{setting['budget']} | MSE {_number(result['train_mse'])} ({held_out}) | "
            f"{target} | {met} | "
            f"{PAPER[('adding', experiment.model)]} | {result['wall_seconds'] / 60:.1f} |")


def digits_row(experiment, result):
    setting = experiment.setting
    name = f"digits, {'permuted' if setting['permuted'] else 'plain'}"
    if result.get("failed"):
        return f"| {name} | {experiment.model} | — | run failed | | | | |"
    met = _met(result["test_accuracy"], DIGITS_TARGET_ACCURACY)
    return (f"| {name} | {experiment.model} | {result['steps']} / {setting['budget']} | "
            f"test {100 * result['test_accuracy']:.1f}% (validation "
            f"{100 * result['validation_accuracy']:.1f}%) | "
            f">= {100 * DIGITS_TARGET_ACCURACY:.0f}% | {met} | {PAPER[(experiment.model, setting['permuted'])]} | "
            f"{result['wall_seconds'] / 60:.1f} |")


def write_table(runs, path, total_seconds):
    """REPRODUCTION.md: the table, then the exact commands."""
    lines = ["# Reproduction report", "",
             f"Measured by `python benchmarks/reproduce.py`: {total_seconds / 60:.1f} min in "
             "all (the runs' wall times, CPU only). Steps: done / budget. Adding problem: the "
             "training MSE of the last 100 steps (the stop criterion: fresh sequences, each "
             "seen before the update it causes) and, in brackets, the MSE on 1000 held-out "
             "sequences; digits: accuracy on the 360 held-out test images. The paper column "
             "is MNIST (784 steps), not directly comparable with the 64-step digits.",
             "",
             "| experiment | model | steps | measured | target | met | paper | minutes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for experiment, result in runs:
        row = adding_row if experiment.kind == "adding" else digits_row
        lines.append(row(experiment, result))
    lines += ["", "Commands (each resumes from its checkpoints if re-run):", ""]
    lines += [f"    {result['command']}" for _, result in runs if "command" in result]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    return path


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    from matplotlib import pyplot  # pylint: disable=import-outside-toplevel
    return pyplot


def plot_adding(runs, path):
    """Training MSE per 100-step window, IndRNN vs LSTM, one panel per T."""
    runs = [(experiment, result) for experiment, result in runs
            if experiment.kind == "adding" and "history" in result]
    lengths = sorted({experiment.setting["T"] for experiment, _ in runs})
    if not lengths:
        return None
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(1, len(lengths), squeeze=False,
                                   figsize=(4.5 * len(lengths), 3.6))
    for axis, length in zip(axes[0], lengths):
        for experiment, result in runs:
            if experiment.setting["T"] != length:
                continue
            points = [(record["step"], record["loss"]) for record in result["history"]]
            axis.plot(*zip(*points), label=experiment.model)
        axis.axhline(ADDING_CHANCE_MSE, color="gray", linestyle=":", label="chance 0.167")
        axis.axhline(ADDING_TARGET_MSE, color="gray", linestyle="--", label="target 0.01")
        axis.set_yscale("log")
        axis.set_title(f"adding problem, T={length}")
        axis.set_xlabel("step")
        axis.set_ylabel("training MSE (100-step mean)")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def plot_digits(runs, path):
    """Validation accuracy over training, the four digits runs."""
    runs = [(experiment, result) for experiment, result in runs
            if experiment.kind == "digits" and "history" in result]
    if not runs:
        return None
    pyplot = _pyplot()
    figure, axis = pyplot.subplots(figsize=(6.5, 4))
    for experiment, result in runs:
        points = [(record["step"], record["val_accuracy"]) for record in result["history"]
                  if "val_accuracy" in record]
        label = (f"{experiment.model}, {'permuted' if experiment.setting['permuted'] else 'plain'}"
                 f" (test {100 * result['test_accuracy']:.1f}%)")
        axis.plot(*zip(*points), marker=".", label=label)
    axis.axhline(DIGITS_TARGET_ACCURACY, color="gray", linestyle="--", label="target 97%")
    axis.set_ylim(0.5, 1.0)
    axis.set_xlabel("step")
    axis.set_ylabel("validation accuracy")
    axis.set_title("8x8 digits as 64-step pixel sequences")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def experiments_from_flags():
    """The experiments the flags ask for, in running order."""
    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"--parts: expected names from {PARTS}, got {sorted(unknown)}.")
    experiments = []
    if "adding" in FLAGS.parts:
        try:
            time_steps = [int(value) for value in FLAGS.adding_time_steps]
            budgets = [int(value) for value in FLAGS.adding_steps]
        except ValueError as error:
            raise app.UsageError(f"--adding_time_steps / --adding_steps: expected integers "
                                 f"({error}).") from None
        if len(budgets) == 1:
            budgets = budgets * len(time_steps)
        if len(budgets) != len(time_steps) or min(time_steps + budgets) < 2:
            raise app.UsageError("--adding_steps: expected one budget (>= 2), or one per "
                                 f"--adding_time_steps entry, got {FLAGS.adding_steps}.")
        experiments += adding_experiments(time_steps, budgets)
    if "digits" in FLAGS.parts:
        experiments += digits_experiments(FLAGS.digits_indrnn_steps, FLAGS.digits_drnn_steps)
    if "long" in FLAGS.parts:
        if FLAGS.long_steps % LOG_EVERY:
            raise app.UsageError(f"--long_steps={FLAGS.long_steps} must be a multiple of "
                                 f"{LOG_EVERY}.")
        experiments.append(long_adding_experiment(FLAGS.long_time_steps, FLAGS.long_steps))
    return experiments


def main(argv):
    """Runs the experiments, then writes the table, the plots and results.json."""
    del argv  # flags only
    experiments = experiments_from_flags()
    results_path = os.path.join(FLAGS.output_dir, "results.json")
    previous = load_previous_results(results_path)
    max_seconds = FLAGS.max_minutes and FLAGS.max_minutes * 60
    runs = [(experiment, keep_earlier_timing(
        run_experiment(experiment, FLAGS.run_dir, max_seconds),
        previous.get(experiment.name, {}))) for experiment in experiments]
    total_seconds = sum(result["wall_seconds"] for _, result in runs)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    table = write_table(runs, os.path.join(FLAGS.output_dir, "REPRODUCTION.md"), total_seconds)
    plot_adding(runs, os.path.join(FLAGS.output_dir, "adding_problem.png"))
    plot_digits(runs, os.path.join(FLAGS.output_dir, "digits.png"))
    with open(results_path, "w", encoding="utf-8") as file:
        json.dump({experiment.name: {key: value for key, value in result.items()
                                     if key != "history"}
                   for experiment, result in runs}, file, indent=1, sort_keys=True)
    logging.info("Wrote %s (%.1f min in all).", table, total_seconds / 60)
    with open(table, encoding="utf-8") as file:
        print(file.read())


if __name__ == "__main__":
    app.run(main)
