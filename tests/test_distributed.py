"""Data parallelism (rkd.train.distributed): two processes under torchrun (gloo, CPU)
train as one process does, and the pieces they rely on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import distributed_probe as probe
from rkd.data import EpisodeSampler, MPerClassSampler
from rkd.data.samplers import ShardedBatchSampler, shard_positions, shard_sizes
from rkd.experiments.launch import parse_value
from rkd.losses import rkd_angle
from rkd.losses.terms import LOSS_TERMS, TermContext
from rkd.train import TrainConfig
from rkd.train.checkpoint import Checkpointer
from rkd.train.distributed import ANGLE_ANCHORS, DataParallel, DataParallelOptions, _use_sync_batchnorm
from rkd.train.guard import NonFiniteGuard, NonFiniteLossError, ProcessesDisagreeError

TESTS = Path(__file__).parent

# ---------------------------------------------------------------------------- two processes


def run_two_processes(out: Path) -> list[dict]:
    """The probe's runs under ``torchrun --nproc_per_node 2`` (gloo on the CPU): each rank's records."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(TESTS / "distributed_probe.py"), str(out)]
    done = subprocess.run(command, cwd=TESTS, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return [torch.load(out / f"rank{rank}.pt") for rank in range(2)]


def assert_close_gradients(single, parallel, what):
    assert len(single) == len(parallel) == probe.STEPS, what
    for step, (expected, found) in enumerate(zip(single, parallel), start=1):
        scale = max(g.abs().max().item() for g in expected if g is not None)
        for index, (g1, g2) in enumerate(zip(expected, found)):
            assert (g1 is None) == (g2 is None), f"{what}: parameter {index} has a gradient in one run only"
            if g1 is not None:
                # relative to the largest gradient: a bias that RKD's translation invariance leaves
                # at ~1e-8 differs by rounding only
                where = f"{what}, step {step}, parameter {index}"
                torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-5 * scale,
                                           msg=lambda m, where=where: f"{where}: {m}")


def assert_trains_as_one_process(single, found, what):
    assert [s for s, _ in found["losses"]] == [s for s, _ in single["losses"]] == list(range(1, probe.STEPS + 1))
    for (_, expected), (_, values) in zip(single["losses"], found["losses"]):
        assert values.keys() == expected.keys()
        for term in expected:
            assert values[term] == pytest.approx(expected[term], rel=1e-5, abs=1e-7), (what, term)
    assert_close_gradients(single["grads"], found["grads"], what)
    assert found["state"].keys() == single["state"].keys()
    for key, value in single["state"].items():
        torch.testing.assert_close(found["state"][key], value, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, key=key: f"{what}, {key}: {m}")


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
    """Two processes (torchrun, gloo, CPU), one global batch of 9 split 5 + 4, for RKD-DA
    (also with RKD-A's local anchors), RRD, Triplet and FitNet's hint stage (a feature-map
    tap, learned regressors):

    - the loss terms, the gradient handed to the optimiser at every step and the weights
      after the last of 4 SGD steps equal the single-process run's within float tolerance,
      and the two processes hold bit-identical weights (and RRD queue);
    - a run killed after step 3 (its checkpoint is step 2's, written by rank 0) and started
      again resumes in both processes and ends exactly as the uninterrupted run, with a
      loader worker drawing the batches ahead of the loop.

    One torchrun for all of it: starting the processes is most of the ~20 s.
    """
    ranks = run_two_processes(tmp_path)
    for name in probe.RUNS:
        single = probe.train(name)
        for rank, records in enumerate(ranks):
            assert_trains_as_one_process(single, records[name], f"{name}, rank {rank}")
        first, second = (records[name]["state"] for records in ranks)
        assert all(torch.equal(first[k], second[k]) for k in first), f"{name}: the processes' weights drifted apart"
    for rank, records in enumerate(ranks):
        assert [s for s, _ in records["killed"]["losses"]] == [1, 2, 3]
        assert [s for s, _ in records["resumed"]["losses"]] == [3, 4]
        assert records["resumed"]["losses"][-1] == records[probe.RESUMED]["losses"][-1]
        uninterrupted = records[probe.RESUMED]["state"]
        assert all(torch.equal(records["resumed"]["state"][k], uninterrupted[k]) for k in uninterrupted), rank


# ---------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize("batch_size, world_size", [(9, 2), (128, 8), (128, 3), (5, 5), (100, 8)])
def test_shards_put_back_together_are_the_batch(batch_size, world_size):
    sizes = shard_sizes(batch_size, world_size)
    assert sum(sizes) == batch_size and max(sizes) - min(sizes) <= 1
    joined = [p for rank in range(world_size) for p in shard_positions(batch_size, rank, world_size)]
    assert joined == list(range(batch_size))


def test_a_batch_smaller_than_the_world_is_refused():
    with pytest.raises(ValueError, match="cannot be split over 8 processes"):
        shard_sizes(3, 8)
    with pytest.raises(ValueError, match="rank"):
        shard_positions(8, 2, 2)


def test_sharded_samplers_give_the_global_batch_with_every_class_whole():
    labels = np.repeat(np.arange(30), 6)
    global_sampler = MPerClassSampler(labels, m=5, batch_size=128, fill_with_partial_class=True, seed=3)
    shards = [ShardedBatchSampler(MPerClassSampler(labels, m=5, batch_size=128, fill_with_partial_class=True,
                                                   seed=3), rank, 8) for rank in range(8)]
    batches = list(global_sampler)
    parts_of = [list(shard) for shard in shards]
    assert len(batches) == len(global_sampler) == len(shards[0])
    for batch, *parts in zip(batches, *parts_of):
        assert [i for part in parts for i in part] == batch
        counts = np.bincount(labels[batch])
        assert sorted(counts[counts > 0].tolist()) == [3] + [5] * 25  # 25 classes x 5 + 3 of a 26th
    assert shards[0].state_dict() == global_sampler.state_dict() == {"seed": 3, "epoch": 1, "position": 0}
    episodes = EpisodeSampler(labels, n_way=5, k_shot=1, n_query=3, episodes=4, seed=2)
    episode_shards = [ShardedBatchSampler(EpisodeSampler(labels, n_way=5, k_shot=1, n_query=3, episodes=4, seed=2),
                                          rank, 3) for rank in range(3)]
    for episode, *parts in zip(list(episodes), *(list(shard) for shard in episode_shards)):
        assert [i for part in parts for i in part] == episode  # the class-major layout is kept


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bounds", [(0, 5, 13), (0, 7, 13), (0, 1, 2, 13)])
def test_rkd_angle_over_a_partition_of_the_vertices_sums_to_rkd_angle(bounds, dtype):
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(13, 5, dtype=dtype, generator=generator).requires_grad_(True)
    teacher = torch.randn(13, 7, dtype=dtype, generator=generator)
    whole = rkd_angle(student, teacher)
    (whole_grad,) = torch.autograd.grad(whole, student)
    parts = sum(rkd_angle(student, teacher, vertices=slice(a, b)) for a, b in zip(bounds, bounds[1:]))
    (parts_grad,) = torch.autograd.grad(parts, student)
    # float64: the same sums in another order; float32: a float32 rounding of each part
    tolerance = dict(rtol=1e-12, atol=1e-16) if dtype == torch.float64 else dict(rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(parts, whole, **tolerance)
    torch.testing.assert_close(parts_grad, whole_grad, **tolerance)


def test_rkd_angle_over_vertices_gradcheck_and_bad_ranges():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(7, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    teacher = torch.randn(7, 3, dtype=torch.float64, generator=generator)
    assert torch.autograd.gradcheck(lambda s: rkd_angle(s, teacher, vertices=range(2, 5)), (student,))
    assert rkd_angle(student, teacher, vertices=slice(4, 4)).item() == 0.0
    with pytest.raises(ValueError, match="not within the batch"):
        rkd_angle(student, teacher, vertices=slice(3, 9))
    with pytest.raises(TypeError, match="step 1"):
        rkd_angle(student, teacher, vertices=slice(0, 7, 2))


class RowJob:
    """What a term split over rows asks of a DataParallel: this process's rows, the sum
    over processes (here the other process's part is made up) and the number of processes."""

    world_size = 2

    def __init__(self, rows, other_part):
        self.rows, self.other_part = rows, other_part

    def own_rows(self):
        return self.rows

    def all_sum(self, part):
        return part.detach() + self.other_part


def test_local_anchors_go_through_the_terms_own_row_split():
    """ANGLE_ANCHORS["local"] wraps any term that says it splits over rows, through
    LossTerm.forward_rows: the value is the sum of the processes' parts, the gradient W
    times this process's part; the term is put back afterwards. RKD-A's rows over a
    partition add up to its whole loss."""
    term = LOSS_TERMS.get("rkd_angle").build(TermContext(student_dim=5, teacher_dim=7))
    assert term.splits_over_rows
    assert not LOSS_TERMS.get("rkd_distance").build(TermContext(student_dim=5)).splits_over_rows
    generator = torch.Generator().manual_seed(2)
    student = {"embedding": torch.randn(9, 5, dtype=torch.float64, generator=generator, requires_grad=True)}
    teacher = {"embedding": torch.randn(9, 7, dtype=torch.float64, generator=generator)}
    labels = torch.zeros(9, dtype=torch.long)
    whole = term(student, teacher, labels)
    first, second = (term.forward_rows(student, teacher, labels, rows) for rows in (range(0, 5), range(5, 9)))
    torch.testing.assert_close(first + second, whole, rtol=1e-12, atol=0)

    restore = ANGLE_ANCHORS.get("local")(term, RowJob(range(0, 5), second.detach()))
    shared = term(student, teacher, labels)
    torch.testing.assert_close(shared, whole, rtol=1e-12, atol=0)
    (shared_grad,) = torch.autograd.grad(shared, student["embedding"])
    (first_grad,) = torch.autograd.grad(first, student["embedding"])
    torch.testing.assert_close(shared_grad, 2 * first_grad)
    restore()
    assert "forward" not in vars(term) and ANGLE_ANCHORS.get("global")(term, RowJob(range(0, 5), second)) is None
    with pytest.raises(NotImplementedError, match="not a sum over rows"):
        distance = LOSS_TERMS.get("rkd_distance").build(TermContext(student_dim=5))
        distance.forward_rows(student, teacher, labels, range(2))


def test_sync_batchnorm_holds_the_same_tensors_and_is_put_back():
    torch.manual_seed(0)
    student = probe.TinyNet(6, normalize=False)
    student.hidden.insert(2, nn.BatchNorm1d(16))
    original = student.hidden[2]
    x = torch.randn(8, 1, 8, 8)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    expected = student(x)["embedding"]
    student.load_state_dict(before)
    restore = _use_sync_batchnorm(student)
    synced = student.hidden[2]
    assert isinstance(synced, nn.SyncBatchNorm) and synced.weight is original.weight
    assert synced.running_mean is original.running_mean
    assert list(student.state_dict()) == list(before)
    # outside a job SyncBatchNorm normalises as BatchNorm does
    torch.testing.assert_close(student(x)["embedding"], expected)
    restore()
    assert student.hidden[2] is original
    # the synced layer's update (after load_state_dict put the count back to 0) is the original's
    assert original.num_batches_tracked.item() == 1


class FakeJob:
    """What the guard asks of a DataParallel: the other process's records are made up."""

    def __init__(self, rank, other):
        self.rank, self.other = rank, other

    def stack(self, tensor):
        rows = [tensor, self.other(tensor)]
        return torch.stack(rows if self.rank == 0 else rows[::-1])


def guarded_step(parallel, loss=0.5):
    guard = NonFiniteGuard(None, total_steps=3, desc="probe", lr=0.1, check_every=1,
                           resume_hint=lambda: "", parallel=parallel)
    guard.record(0, {"rkd_distance": torch.tensor(loss)}, guard.begin_step(torch.zeros(2, 3)))
    return guard.flush(0)


def test_the_guard_stops_every_process_at_a_nan_in_any_of_them():
    assert guarded_step(FakeJob(0, lambda t: t)) == [(0, {"rkd_distance": 0.5})]
    nan_input = lambda t: torch.cat([t[:1], torch.zeros(1, dtype=t.dtype)])  # noqa: E731
    for rank in (0, 1):
        with pytest.raises(NonFiniteLossError, match=f"input batch \\(in process {1 - rank} of 2\\)"):
            guarded_step(FakeJob(rank, nan_input))


def test_the_guard_stops_processes_that_disagree_on_a_loss():
    with pytest.raises(ProcessesDisagreeError, match="rkd_distance.*process 0: 0.5, process 1: 0.6"):
        guarded_step(FakeJob(0, lambda t: torch.cat([t[:1] + 0.1, t[1:]])))
    assert guarded_step(FakeJob(0, lambda t: torch.cat([t[:1] * (1 + 1e-6), t[1:]])))  # rounding is fine


def test_only_the_writing_process_writes_checkpoints(tmp_path):
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [])
    reader = Checkpointer(tmp_path / "run.pt", TrainConfig(steps=2), model, optimizer, scheduler, {}, writes=False)
    reader.save(1, sampler_state=None, last_batch=None, running_losses={}, history=[], data_seed=0)
    assert reader.saved_step == 1 and not (tmp_path / "run.pt").exists()


def test_a_single_process_is_not_a_job():
    assert DataParallel.current() is None  # torch.distributed is not initialised here
    with pytest.raises(ValueError, match="unknown RKD-A anchors"):
        DataParallelOptions(angle_anchors="everywhere")


def test_launch_reads_parameters_as_papermill_does():
    assert parse_value("True") is True and parse_value("None") is None and parse_value("3") == 3
    assert parse_value("[0, 1, 2]") == [0, 1, 2] and parse_value("1e-3") == 1e-3
    assert parse_value("/data/sets") == "/data/sets" and parse_value("paper") == "paper"
