"""Periodic evaluation (history, never changing the run's result) and the CSV training
log (appended as it goes, equal after a resume, rewritten atomically at the end)."""
from __future__ import annotations

import csv
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rkd.runtime import seed_everything
from rkd.train import TrainConfig, fit
from rkd.train.log import COLUMNS
from test_train import (CONFIG, Blobs, SimulatedKill, assert_same_state, crash_during_checkpoint_at, make_distiller,
                        make_sampler, train)


def read_log(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == COLUMNS
    return [(int(step), kind, name, float(value)) for step, kind, name, value in rows[1:]]


def noisy_evaluation(distiller_box):
    """An evaluation that does what real ones do to a run's state: switches the student
    to eval mode, runs it, and draws from every global random generator."""

    def evaluate():
        student = distiller_box[0].student
        student.eval()
        with torch.no_grad():
            embedding = student(Blobs().images[:8])["embedding"]
        noise = torch.randn(1).item() + np.random.rand() + random.random()
        return {"mean_norm": embedding.norm(dim=1).mean().item(), "noise": noise}

    return evaluate


def train_with_eval(checkpoint=None, eval_every=0, config=CONFIG, **kwargs):
    box = []
    distiller = make_distiller()
    box.append(distiller)
    seed_everything(123)  # the evaluation draws from NumPy's and Python's generators too
    steps = []
    result = fit(distiller, Blobs(), make_sampler(), config, checkpoint_path=checkpoint, progress=False,
                 evaluate=noisy_evaluation(box), eval_every=eval_every, num_workers=0,
                 on_step=lambda done, losses: steps.append((done, losses)), **kwargs)
    state = {k: v.clone() for k, v in distiller.state_dict().items() if not k.startswith("teacher.")}
    return result, state, steps


def test_periodic_evaluation_leaves_the_final_weights_bit_identical():
    without, state_without, steps_without = train_with_eval(eval_every=0)
    with_eval, state_with, steps_with = train_with_eval(eval_every=3)
    assert_same_state(state_with, state_without)
    assert steps_with == steps_without and with_eval.losses == without.losses
    assert [entry["step"] for entry in with_eval.history] == [3, 6, 9, 10]
    assert [entry["step"] for entry in without.history] == [10]
    assert with_eval.history[-1] == {"step": 10, **with_eval.metrics}
    assert with_eval.metrics["mean_norm"] == without.metrics["mean_norm"]


def test_eval_every_is_checked():
    with pytest.raises(ValueError, match="eval_every must be an int >= 0"):
        train_with_eval(eval_every=-2)


def test_the_log_holds_every_step_and_every_evaluation(tmp_path):
    path = tmp_path / "run.ckpt"
    result, _, steps = train_with_eval(path, eval_every=4)
    rows = read_log(tmp_path / "run.log.csv")
    losses = [row for row in rows if row[1] == "loss"]
    assert [row[0] for row in losses] == [s for s in range(1, 11) for _ in range(2)]  # rrd and total
    for done, values in steps:
        assert (done, "loss", "rrd", values["rrd"]) in rows
        assert (done, "loss", "total", values["rrd"]) in rows
    evals = [(row[0], row[2], row[3]) for row in rows if row[1] == "eval"]
    expected = [(entry["step"], name, entry[name]) for entry in result.history for name in ("mean_norm", "noise")]
    assert evals == expected and [e[0] for e in evals] == [4, 4, 8, 8, 10, 10]


def test_a_resumed_run_has_the_log_and_history_of_an_uninterrupted_one(tmp_path):
    config = TrainConfig(steps=10, lr=1e-2, milestones=(6,), checkpoint_every=3)
    reference, _, _ = train_with_eval(tmp_path / "reference.ckpt", eval_every=4, config=config)
    reference_log = (tmp_path / "reference.log.csv").read_text()

    class Stop(Exception):
        pass

    def stop(done, losses):
        if done == 8:  # after the evaluation of step 8, two steps past the checkpoint of step 6
            raise Stop()

    box = []
    distiller = make_distiller()
    box.append(distiller)
    seed_everything(123)  # the evaluation draws from NumPy's and Python's generators too
    with pytest.raises(Stop):
        fit(distiller, Blobs(), make_sampler(), config, checkpoint_path=tmp_path / "run.ckpt", progress=False,
            evaluate=noisy_evaluation(box), eval_every=4, num_workers=0, on_step=stop)
    killed_rows = read_log(tmp_path / "run.log.csv")
    assert max(row[0] for row in killed_rows) == 8, "a stopped run keeps the log of every step it did"
    resumed, _, _ = train_with_eval(tmp_path / "run.ckpt", eval_every=4, config=config)
    assert resumed.resumed_from == 6
    assert resumed.history == reference.history
    assert (tmp_path / "run.log.csv").read_text() == reference_log


def test_a_run_killed_inside_a_checkpoint_write_keeps_its_log(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as patch:
        crash_during_checkpoint_at(patch, step=8)
        with pytest.raises(SimulatedKill):
            train(path, num_workers=0)
    rows = read_log(tmp_path / "run.log.csv")
    assert max(row[0] for row in rows) == 8, "the log is flushed before the checkpoint is written"


def test_log_path_choices(tmp_path):
    train(tmp_path / "a.ckpt", num_workers=0, log_path=False)
    assert not (tmp_path / "a.log.csv").exists()
    train(None, num_workers=0, log_path=tmp_path / "logs" / "b.csv")
    assert len(read_log(tmp_path / "logs" / "b.csv")) == 20
    train(None, num_workers=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt", "logs"]


def test_nested_metrics_are_kept_in_the_history_the_checkpoint_and_the_log(tmp_path):
    """Few-shot evaluations return {"5-way": {"accuracy": ..., "ci95": ...}}."""
    path = tmp_path / "run.ckpt"
    config = TrainConfig(steps=4, lr=1e-2, checkpoint_every=2)

    def evaluate():
        return {"5-way": {"accuracy": 50.0, "ci95": torch.tensor(1.5)}, "note": "ok"}

    result = fit(make_distiller(), Blobs(), make_sampler(), config, checkpoint_path=path, progress=False,
                 evaluate=evaluate, eval_every=2, num_workers=0)
    assert result.history[0] == {"step": 2, "5-way": {"accuracy": 50.0, "ci95": 1.5}, "note": "ok"}
    from rkd.runtime import safe_torch_load

    assert safe_torch_load(path)["history"] == [result.history[0]]
    evals = [(row[0], row[2], row[3]) for row in read_log(tmp_path / "run.log.csv") if row[1] == "eval"]
    assert evals[:2] == [(2, "5-way/accuracy", 50.0), (2, "5-way/ci95", 1.5)]


def test_read_training_log_and_the_page_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from rkd.report.plots import training_curves
    from rkd.runs.training import loss_curve
    from rkd.train.log import read_training_log

    result, _, steps = train_with_eval(tmp_path / "run.ckpt", eval_every=4)
    log = read_training_log(tmp_path / "run.log.csv")
    assert list(log.columns) == list(COLUMNS) and log["step"].dtype == "int64"
    total = log[(log.kind == "loss") & (log.name == "total")]
    assert total["value"].tolist() == [values["rrd"] for _, values in steps]  # bit for bit, through the CSV
    curve = loss_curve(tmp_path / "run.log.csv")  # what the runner stores and the page plots
    assert curve["step"] == list(range(1, len(steps) + 1)) and curve["total"] == total["value"].tolist()
    trained = SimpleNamespace(losses=curve, history=result.history)
    figure = training_curves({"a run": trained, "another": trained})
    visible = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in visible] == ["a run", "another"]
    drawn = visible[0].get_lines()[0]
    assert list(drawn.get_ydata()) == total["value"].tolist()  # one term: drawn once, as the total
    assert training_curves({}) is None
    with pytest.raises(FileNotFoundError, match="no training log at"):
        read_training_log(tmp_path / "missing.log.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a training log"):
        read_training_log(tmp_path / "other.csv")
    cut = (tmp_path / "run.log.csv").read_text().splitlines()
    (tmp_path / "cut.log.csv").write_text("\n".join(cut[:5] + [cut[5][:8]]) + "\n")  # a kill mid-line
    assert len(read_training_log(tmp_path / "cut.log.csv")) == 4


def test_the_log_writes_at_most_every_few_seconds_and_always_when_forced(tmp_path, monkeypatch):
    from rkd.train import log as log_module

    clock = [100.0]
    monkeypatch.setattr(log_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    log = log_module.TrainingLog(tmp_path / "run.log.csv", total_steps=3)
    log.add_losses(1, {"a": 1.0})
    log.flush(force=False)
    assert read_log(tmp_path / "run.log.csv") == []
    clock[0] += log_module.FLUSH_SECONDS
    log.flush(force=False)
    assert read_log(tmp_path / "run.log.csv") == [(1, "loss", "a", 1.0), (1, "loss", "total", 1.0)]
    log.add_losses(2, {"a": 0.5})
    log.flush(force=False)
    assert len(read_log(tmp_path / "run.log.csv")) == 2
    log.flush()  # before a checkpoint
    assert len(read_log(tmp_path / "run.log.csv")) == 4
    log.add_losses(3, {"a": 0.25})
    log.close(complete=False)  # a stopped run keeps every row
    assert len(read_log(tmp_path / "run.log.csv")) == 6
