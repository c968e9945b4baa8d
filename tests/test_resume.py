"""A run killed with SIGKILL at random steps, and started again with the same command
until it completes, ends with exactly the metrics and weights of an uninterrupted run.

The pipeline is tiny but real: scikit-learn digits (with a random augmentation that
draws from the torch, NumPy and Python generators), a frozen ``small_cnn_wide`` teacher,
``small_cnn`` students trained with RKD-DA and with RRD (whose queue is part of the
state), ``MPerClassSampler`` batches, 30 steps each with a checkpoint every 4 steps
(epochs of 7 batches, so checkpoints fall mid-epoch and on epoch boundaries).

The batches are loaded by DataLoader workers, and the number of workers changes from
one start to the next (2, 0, 2, ...; the uninterrupted reference has 1): the random
augmentation of each batch is seeded from its step, so neither the kills nor the worker
count may change a single number. Each run also evaluates every 10 steps
(``eval_every``) and writes its CSV training log; the evaluation history and the log of
the killed-and-resumed run must equal the reference's too.

This file is also the child's script: ``python tests/test_resume.py WORKDIR METHOD STEP
WORKERS`` runs the pipeline, printing one line per finished step; the parent kills it
when it reads a chosen step. One kill lands in the middle of a checkpoint write: the
child stalls after writing half of the temporary file and the parent kills it there.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RESUMED_METHODS = ("RKD-DA", "RRD")
STEPS = 30
CHECKPOINT_EVERY = 4
SEED = 3
KILL_SEED = 20190615  # the choice of kill points is seeded: the test never varies between runs
KILLS_PER_METHOD = 2
STALL_AT = ("RRD", 12)  # a checkpoint step: the kill lands inside its atomic write
STALL_MARKER = "stalled-once"
EVAL_EVERY = 10
REFERENCE_WORKERS = 1
WORKERS_BY_START = (2, 0)  # the killed run's starts alternate between these worker counts


# ----------------------------------------------------------------------------- the child


class RandomJitter:
    """A random augmentation that draws from the torch, NumPy and Python generators, as
    real augmentation pipelines do, so the test fails if any of their states is not
    restored on resume."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        import random as python_random

        import numpy as np

        shift = float(np.random.uniform(-0.05, 0.05)) + python_random.uniform(-0.05, 0.05)
        return image + 0.05 * torch.randn_like(image) + shift


def run_pipeline(workdir: Path, emit=print, stall_at: tuple[str, int] | None = None,
                 num_workers: int = REFERENCE_WORKERS) -> None:
    """Train every method of RESUMED_METHODS into ``workdir`` (resuming from what is there)."""
    from rkd import data, models
    from rkd.distill import Distiller
    from rkd.evaluate import embed
    from rkd.losses.terms import TermContext
    from rkd.methods import get_method
    from rkd.metrics import recall_at_k
    from rkd.runtime import (atomic_torch_save, atomic_write_json, configure_determinism, safe_torch_load,
                             seed_everything)
    from rkd.train import TrainConfig, _trainable_state, fit

    configure_determinism(threads=1)
    train_set = data.get_dataset("digits", None, "train", transform=RandomJitter())
    test_set = data.get_dataset("digits", None, "test")
    seed_everything(SEED)
    teacher = models.build_model("small_cnn_wide", in_channels=1, input_size=8, embedding_dim=32, normalize=True)
    teacher.eval().requires_grad_(False)
    config = TrainConfig(steps=STEPS, optimizer="adam", lr=3e-3, milestones=(20,), gamma=0.1,
                         checkpoint_every=CHECKPOINT_EVERY)

    for method_name in RESUMED_METHODS:
        result_path = workdir / f"{method_name}.json"
        if result_path.is_file():
            continue  # finished before the kill: like an experiment, skip what is done
        checkpoint = workdir / f"{method_name}.ckpt"
        emit(f"begin {method_name} {safe_torch_load(checkpoint)['step'] if checkpoint.is_file() else 0}")
        seed_everything(SEED)
        student = models.build_model("small_cnn", in_channels=1, input_size=8, embedding_dim=16, normalize=False)
        method = get_method(method_name, task="metric")
        if "rrd" in method.term_names:
            # a small queue wraps around every few steps, so its pointer matters too
            method = method.with_term_options("rrd", queue_size=64, feat_dim=16)
        distiller = Distiller(student, teacher, method, TermContext.from_models(student, teacher))
        sampler = data.MPerClassSampler(train_set.targets, m=4, batch_size=20, batches_per_epoch=7, seed=SEED)

        def evaluate(student=student):
            embeddings, labels = embed(student, test_set, 512, torch.device("cpu"))
            return {f"recall_at_{k}": v for k, v in recall_at_k(embeddings, labels, (1, 2, 4)).items()}

        def on_step(done, losses, method_name=method_name):
            emit(f"step {method_name} {done} {json.dumps(losses, sort_keys=True)}")

        if stall_at is not None and stall_at[0] == method_name and not (workdir / STALL_MARKER).exists():
            _stall_inside_checkpoint_write(workdir, stall_at[1], emit)
        result = fit(distiller, train_set, sampler, config, checkpoint_path=checkpoint, evaluate=evaluate,
                     eval_every=EVAL_EVERY, on_step=on_step, progress=False, desc=method_name,
                     num_workers=num_workers)
        atomic_torch_save(_trainable_state(distiller), workdir / f"{method_name}.final.pt")
        atomic_write_json({"metrics": result.metrics, "losses": result.losses, "history": result.history},
                          result_path)
        emit(f"finished {method_name} resumed_from={result.resumed_from}")


def _stall_inside_checkpoint_write(workdir: Path, step: int, emit) -> None:
    """Make the checkpoint write of ``step`` stop halfway through its temporary file and
    wait there, so the parent's SIGKILL lands in the middle of an atomic write."""
    import io

    import rkd.runtime

    real_save = torch.save

    def stalling_save(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == step:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            handle.flush()
            (workdir / STALL_MARKER).touch()
            emit(f"stalled {step}")
            time.sleep(600)
        return real_save(obj, handle, *args, **kwargs)

    rkd.runtime.torch.save = stalling_save


def _child_main(argv: list[str]) -> None:
    workdir, method, step, workers = argv
    run_pipeline(Path(workdir), emit=lambda line: print(line, flush=True), stall_at=(method, int(step)),
                 num_workers=int(workers))


# ----------------------------------------------------------------------------- the parent


def _parse(lines: list[str]) -> dict[tuple[str, int], dict[str, float]]:
    steps = {}
    for line in lines:
        if line.startswith("step "):
            _, method, done, losses = line.split(" ", 3)
            steps.setdefault((method, int(done)), []).append(json.loads(losses))
    return steps


def _load_outputs(workdir: Path):
    from rkd.runtime import safe_torch_load

    return {
        method: (json.loads((workdir / f"{method}.json").read_text()), safe_torch_load(workdir / f"{method}.final.pt"))
        for method in RESUMED_METHODS
    }


def _run_with_kills(workdir: Path, kill_points: set[tuple[str, int]], stall_at: tuple[str, int]):
    """Start the child, SIGKILL it at each of ``kill_points`` (the first time it reports
    that step) and when it stalls in a checkpoint write; restart it with the same
    command until it exits cleanly. Returns every line it printed, in order, and the
    number of kills."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    pending = set(kill_points)
    lines, kills = [], 0
    for attempt in range(len(kill_points) + 3):
        workers = WORKERS_BY_START[attempt % len(WORKERS_BY_START)]
        command = [sys.executable, __file__, str(workdir), stall_at[0], str(stall_at[1]), str(workers)]
        # stderr to a file, not a pipe: a pipe nobody reads while stdout is read could fill and block the child
        stderr_path = workdir.parent / "child-stderr.log"
        with open(stderr_path, "w") as stderr_file:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=env,
                                     cwd=REPO)
        killed = False
        try:
            for line in child.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                parts = line.split(" ")
                point = (parts[1], int(parts[2])) if parts[0] == "step" else None
                if parts[0] == "stalled" or point in pending:
                    pending.discard(point)
                    child.send_signal(signal.SIGKILL)
                    killed = True
                    break
        except BaseException:  # the test itself failed: leave no child behind
            child.kill()
            raise
        finally:
            returncode = child.wait()
            child.stdout.close()
        if killed:
            kills += 1
            lines.append("<killed>")
            continue
        assert returncode == 0, f"the child failed (exit {returncode}):\n{stderr_path.read_text()[-4000:]}"
        return lines, kills
    raise AssertionError(f"the child did not complete after {kills} kills:\n" + "\n".join(lines[-20:]))


@pytest.mark.slow
def test_sigkill_at_random_steps_resumes_to_the_uninterrupted_result(tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference_dir.mkdir()
    killed_dir.mkdir()

    reference_lines: list[str] = []
    saved_threads = torch.get_num_threads()
    try:
        run_pipeline(reference_dir, emit=reference_lines.append)
    finally:
        torch.set_num_threads(saved_threads)

    chooser = random.Random(KILL_SEED)
    kill_points = {(method, step) for method in RESUMED_METHODS
                   for step in chooser.sample(range(1, STEPS + 1), KILLS_PER_METHOD)}
    kill_points.discard(STALL_AT)
    lines, kills = _run_with_kills(killed_dir, kill_points, STALL_AT)

    # the kills happened, and the restarts really resumed from checkpoints
    assert kills == len(kill_points) + 1, lines
    assert "stalled 12" in lines
    begins = [line for line in lines if line.startswith("begin ")]
    assert any(int(line.split()[2]) > 0 for line in begins), begins
    assert f"begin {STALL_AT[0]} {STALL_AT[1] - CHECKPOINT_EVERY}" in lines, (
        "after the kill inside the write of step 12, the run must resume from the checkpoint before it")

    # every step's losses, before and after each resume, are those of the reference run
    reference_steps = {key: values[0] for key, values in _parse(reference_lines).items()}
    killed_steps = _parse(lines)
    assert set(killed_steps) == set(reference_steps)
    for key, values in killed_steps.items():
        assert all(v == reference_steps[key] for v in values), (key, values, reference_steps[key])

    # the final metrics and weights (RRD queue and pointer included) are identical
    reference, resumed = _load_outputs(reference_dir), _load_outputs(killed_dir)
    for method in RESUMED_METHODS:
        assert resumed[method][0] == reference[method][0], method
        reference_state, resumed_state = reference[method][1], resumed[method][1]
        assert reference_state.keys() == resumed_state.keys()
        for name, tensor in reference_state.items():
            assert torch.equal(tensor, resumed_state[name]), (method, name)
    assert any("terms.rrd.loss.queue" == name for name in reference["RRD"][1])

    # the evaluation history (every 10 steps and the end) and the CSV logs are the reference's too
    for method in RESUMED_METHODS:
        assert [entry["step"] for entry in resumed[method][0]["history"]] == [10, 20, STEPS], method
        assert (killed_dir / f"{method}.log.csv").read_text() == (reference_dir / f"{method}.log.csv").read_text()

    # the temporary file orphaned by the kill inside the write was cleaned up
    assert not list(killed_dir.glob(".*.tmp")), list(killed_dir.iterdir())


if __name__ == "__main__":
    _child_main(sys.argv[1:])
