"""Runs spread over processes (submitit's local executor): two processes at a time give
the numbers of one process, a killed job resumes from its checkpoint, a finished table
submits nothing, the status command sees each state, and a run that another process is
training is waited for and read, not trained twice."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pandas as pd
import pytest

from rkd.experiments.base import Experiment
from rkd.experiments.datasets import DIGITS
from rkd.experiments.launch import JobWorker, launch, status
from rkd.experiments.recipes import MetricRecipe, Preset
from rkd.models.spec import ModelSpec
from rkd.runs import prepare
from rkd.runs.executors import JobFailedError, waves
from rkd.runs.spec import Batches, Evaluation
from rkd.train import TrainConfig

# the worker processes cannot import this test module: its classes travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RECIPE = MetricRecipe(
    teacher=ModelSpec("small_cnn_wide", (("in_channels", 1),)), teacher_dim=16,
    student=ModelSpec("small_cnn", (("in_channels", 1),)),
    teacher_train=TrainConfig(steps=60, lr=1e-3, checkpoint_every=5), student_train=TrainConfig(steps=8, lr=1e-3),
    batches=Batches("m_per_class", size=20, m=4), evaluation=Evaluation("recall", ks=(1,), batch_size=200),
)


class Spread(Experiment):
    """Two seeds of a teacher and two students on scikit-learn's digits: seconds a job."""

    name, title, page, metric, keys = "spread", "Spread", "spread", "recall_at_1", ("method",)
    presets = {"ci": Preset(scale="ci", datasets=(DIGITS,), recipe=RECIPE, seeds=(0, 1), threads=1, num_workers=0)}

    def runs(self, preset):
        for data in preset.datasets:
            yield preset.recipe.teacher_run(data)
            for method in ("Triplet", "RKD-DA"):
                yield preset.recipe.student_run(data, method, method=method, dim=8, l2=True)


def params(cache: Path) -> dict:
    return {"cache_dir": str(cache), "progress": False}


def rows(cache: Path) -> pd.DataFrame:
    return Spread().run(**params(cache)).rows


@pytest.mark.slow
def test_two_processes_at_a_time_give_the_numbers_of_one_and_a_finished_table_submits_nothing(tmp_path):
    call = prepare(Spread(), **params(tmp_path / "spread"))
    # the teachers and the Triplet students (which have none), then the RKD-DA students
    assert [len(w) for w in waves(call.jobs, lambda job: False)] == [4, 2]
    assert launch(Spread(), params(tmp_path / "spread"), executor="local", jobs=2) == 6
    assert launch(Spread(), params(tmp_path / "spread"), executor="local", jobs=2) == 0
    assert status(Spread(), params(tmp_path / "spread"))["done"] == [job.name for job in call.jobs]
    pd.testing.assert_frame_equal(rows(tmp_path / "spread"), rows(tmp_path / "alone"))


@pytest.mark.slow
def test_a_killed_job_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_one(tmp_path):
    cache = tmp_path / "killed"
    call = prepare(Spread(), **params(cache))
    teacher = call.jobs[0]
    checkpoint = call.session.store.checkpoint_path(teacher.key)
    worker = tmp_path / "worker.pkl"
    worker.write_bytes(cloudpickle.dumps(JobWorker(Spread(), params(cache))))
    code = f"import cloudpickle; cloudpickle.loads(open({str(worker)!r}, 'rb').read())({teacher.key!r})"
    process = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the job should have written a checkpoint before it was killed"
    assert status(Spread(), params(cache))["waiting"][0] == teacher.name
    assert launch(Spread(), params(cache), executor="local", jobs=2) == 6  # the killed one resumes
    assert not checkpoint.exists()  # finished: the model lives in the store now
    pd.testing.assert_frame_equal(rows(cache), rows(tmp_path / "alone"))


class Broken(Spread):
    """Its students diverge at once (a learning rate of 1e38)."""

    name = "broken"

    def runs(self, preset):
        for run in super().runs(preset):
            yield run if run.role == "teacher" else replace(run, train=TrainConfig(steps=3, lr=1e38))


@pytest.mark.slow
def test_a_failed_job_stops_the_launch_with_its_log_and_shows_in_the_status(tmp_path):
    with pytest.raises(JobFailedError, match=r"2 of 4 jobs failed:(.|\n)*NonFiniteLossError"):
        launch(Broken(), params(tmp_path), executor="local", jobs=2)
    found = status(Broken(), params(tmp_path))
    assert [len(found[state]) for state in ("done", "failed", "waiting")] == [2, 2, 2]
    assert "NonFiniteLossError" in found["failed"][0]


_HOLDER = """
import sys, time
from pathlib import Path
from rkd.runs.store import ModelStore
store = ModelStore(Path(sys.argv[1]))
with store.training("k" * 64):
    Path(sys.argv[2]).touch()  # holding the lock now
    time.sleep(1.5)
    store.put("k" * 64, {"run": "one"}, {"trained by": "the other process"})
"""


def test_a_run_another_process_is_training_is_waited_for_and_read_not_trained_again(tmp_path):
    from rkd.runs.store import ModelStore

    started = tmp_path / "started"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "store"), str(started)])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the process holding the lock did not start"
            time.sleep(0.05)
        store = ModelStore(tmp_path / "store")
        assert store.is_locked("k" * 64) and store.get("k" * 64, {"run": "one"}) is None
        with store.training("k" * 64):  # waits for the other process, as Session.result does, then reads
            assert store.get("k" * 64, {"run": "one"}) == {"trained by": "the other process"}
        assert not store.is_locked("k" * 64)
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0
