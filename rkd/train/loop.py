"""The training loop: :func:`fit`.

Reading order: :mod:`.stream` (which indices each step loads, resumable), :mod:`.loader`
(how a batch is loaded: workers, seeds, pinning), :mod:`.step` (precision, memory
format, the teacher under inference_mode), :mod:`.guard` (NaN/inf), :mod:`.monitor`
(reading the losses, the log, progress, periodic evaluation), :mod:`.checkpoint` (what a
resume needs, checked), :mod:`.log` (the CSV), :mod:`.distributed` (several processes
under torchrun). This module only puts them in order, step after step.

What :func:`fit` does, in detail.

``distiller(images, labels)`` returns a dict of weighted loss terms; their sum is
minimised over ``distiller.trainable_parameters()`` (the student and any learned
loss parameters, such as FitNet regressors or RRD projections; never the teacher).

Data. ``batch_sampler`` yields lists of dataset indices, ``len(batch_sampler)`` per
epoch; for exact resumption its batches must depend only on its seed and the epoch
number given to ``set_epoch`` (rkd's samplers), or be the same on every pass. Batches
are loaded by a DataLoader with ``num_workers`` worker processes (None: derived from
the machine, see :func:`rkd.train.loader.default_num_workers`; 0: in this process).
The random transforms of step ``s`` draw from generators seeded with
``(data_seed, s)`` (``data_seed`` None: ``torch.initial_seed()``, the seed of the last
``torch.manual_seed`` / ``seed_everything``), so the numbers do not depend on
``num_workers``. ``image_cache`` (``"memory"`` or a file path) decodes and resizes the
images once (:class:`rkd.train.image_cache.DecodedImageCache`); batches are identical.

Step. ``precision`` (``"auto"``: ``"bf16"`` autocast on CUDA, ``"fp32"`` elsewhere),
``channels_last`` (None: on CUDA), ``compile`` (True or a torch.compile backend), the
teacher always under ``torch.inference_mode``: see :mod:`rkd.train.step`. NaN/inf are
read every ``check_every`` steps (None: every step on the CPU, every 10 on CUDA), see
:mod:`rkd.train.guard`.

Checkpoints. With ``checkpoint_path``, the trainable state (including the RRD
queue), optimiser, scheduler, random states, sampler state, evaluation history and
step are written atomically every ``config.checkpoint_every`` steps and at the end; a
run started again with the same arguments resumes from the last one and ends with
exactly the result of an uninterrupted run. A checkpoint written by another
configuration, method, model, sampler or numerics is refused
(:class:`CheckpointMismatchError`), and one holding arbitrary pickled objects is never
unpickled (:class:`rkd.runtime.UnsafeCheckpointError`).

Evaluation and logs. ``evaluate`` (no arguments, returns a dict) runs after the last
step (its result is ``metrics``: the reported model is the last step's) and, with
``eval_every=k``, after every k-th step; each evaluation is in ``TrainResult.history``.
Periodic evaluations run with the random states saved and restored around them and the
model put back in training mode, so they never change the run's result.
``log_path`` (None: ``<checkpoint stem>.log.csv`` beside the checkpoint, if any;
False: none) receives every step's loss terms and every evaluation (:mod:`rkd.train.log`).
``on_step(step, losses)`` is called after each step (and after its checkpoint) with
the number of steps done and the weighted loss terms as floats; with
``check_every=k`` the calls come in groups at each check.

Several processes. Started by ``torchrun`` (``torch.distributed`` initialised with
two or more processes), every process calls ``fit`` with the same arguments and they
train one model on the global batch that ``batch_sampler`` gives, with
DistributedDataParallel: each loads and runs its own part of the batch, the loss
terms see the gathered batch, the gradient is the single-process gradient; rank 0
writes the checkpoint and the log and shows the progress bar. See
:mod:`rkd.train.distributed` (the options are set by
:func:`rkd.train.distributed.configure` / ``setup``).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .checkpoint import Checkpointer, CheckpointMismatchError, Resumed
from .config import OPTIMIZERS, TrainConfig, TrainResult
from .distributed import DataParallel
from .guard import NonFiniteGuard
from .image_cache import DecodedImageCache
from .loader import LoadFailure, default_num_workers, make_loader, shut_down
from .log import TrainingLog, default_log_path
from .monitor import PeriodicEvaluation, StepMonitor
from .step import lean_models, resolve_step_options
from .stream import BatchStream, check_resumed_sampler

__all__ = ["fit"]


def fit(distiller: nn.Module, dataset: Dataset, batch_sampler, config: TrainConfig, *,
        device: str | torch.device = "cpu", checkpoint_path: str | Path | None = None,
        evaluate: Callable[[], dict[str, Any]] | None = None, eval_every: int = 0,
        on_step: Callable[[int, dict[str, float]], None] | None = None, progress: bool = True, desc: str = "train",
        log_path: str | Path | bool | None = None, num_workers: int | None = None, data_seed: int | None = None,
        image_cache: str | Path | None = None, precision: str = "auto", channels_last: bool | None = None,
        compile: bool | str = False, check_every: int | None = None) -> TrainResult:
    """Train ``distiller`` for ``config.steps`` steps and return its losses and metrics.

    ``distiller(images, labels)`` returns a dict of weighted loss terms; their sum is
    minimised over ``distiller.trainable_parameters()`` (the student and any learned loss
    parameters, never the teacher). ``batch_sampler`` yields lists of dataset indices,
    ``len(batch_sampler)`` per epoch (for an exact resume: a function of its seed and the
    epoch given to ``set_epoch``, as rkd's samplers are). The options are explained in the
    module docstring: ``checkpoint_path`` (resumable), ``evaluate`` (after the last step and
    every ``eval_every`` steps), ``log_path`` (None: beside the checkpoint; False: none),
    the step (:mod:`rkd.train.step`). Under ``torchrun`` every process calls ``fit`` alike.

    Raises:
        NonFiniteLossError: NaN or inf in the student's outputs or a loss term, naming the step
            (:mod:`rkd.train.guard`); any other error in a step or its batch's loading names its step.
        CheckpointMismatchError: a checkpoint of another configuration, method, model, sampler or numerics.
    """
    options = resolve_step_options(device, precision=precision, channels_last=channels_last, compile=compile,
                                   check_every=check_every)
    PeriodicEvaluation.check_every(eval_every)
    parallel = DataParallel.current()  # None: this process trains alone
    run = _Run.start(distiller, config, options, parallel, batch_sampler, checkpoint_path, data_seed)
    steps = config.steps
    feed = _Feed(dataset, batch_sampler, run, options, parallel, num_workers, image_cache, desc)
    log = _open_log(log_path, checkpoint_path, steps, run.resumed, writes=run.writes)
    guard = NonFiniteGuard(getattr(distiller, "student", None), total_steps=steps, desc=desc, lr=config.lr,
                           check_every=options.check_every, resume_hint=run.resume_hint, parallel=parallel)
    monitor = StepMonitor(guard, running=run.resumed.running_losses, window=max(1, min(len(batch_sampler), steps)),
                          log=log, on_step=on_step, steps=steps, start_step=run.start_step, desc=desc,
                          show=progress and run.writes)
    evaluation = PeriodicEvaluation(evaluate, eval_every, steps=steps, history=run.resumed.history, log=log)
    completed = False
    try:
        replicated = parallel.replicate(distiller, options.device) if parallel is not None else nullcontext(distiller)
        with lean_models(distiller, options, parallel) as lean, replicated as model:
            distiller.train()
            for step in range(run.start_step, steps):
                done = step + 1
                images, labels, fingerprint = feed.batch(step)
                input_ok = guard.begin_step(images)
                losses = _forward(model, images, labels, guard, step, input_ok, feed.note)
                guard.record(step, losses, input_ok)
                checkpoint_due = run.checkpoint_due(done)
                monitor.read(step, force=checkpoint_due or evaluation.due(done))
                run.optimizer.zero_grad(set_to_none=True)
                sum(losses.values()).backward()
                run.optimizer.step()
                run.scheduler.step()
                feed.last_fingerprint = fingerprint
                if evaluation.due(done):
                    with lean.suspended():
                        evaluation.periodic(done, distiller)
                if log is not None:  # always before a checkpoint: the log on disk covers every checkpointed step
                    log.flush(force=checkpoint_due)
                if checkpoint_due:
                    run.save(done, feed, monitor)
                monitor.report()
            run.finish(feed, monitor)
        completed = True
    finally:
        monitor.close()
        feed.close()
        if log is not None and not completed:
            log.close(complete=False)
    try:
        metrics = evaluation.final(distiller)
    except BaseException:
        if log is not None:
            log.close(complete=False)
        raise
    if log is not None:
        log.close(complete=True)
    return TrainResult(steps=steps, resumed_from=run.start_step, losses=monitor.mean_losses(), metrics=metrics,
                       history=run.resumed.history)


def _forward(model, images, labels, guard: NonFiniteGuard, step: int, input_ok, note) -> dict[str, torch.Tensor]:
    """The weighted loss terms of one step; an exception names the step (and the NaN/inf
    that caused it, if one did)."""
    try:
        return model(images, labels)
    except Exception as err:
        problem = guard.explain(step, input_ok)
        if problem is not None:
            raise problem from err
        note(err, "in", step)
        raise


def _open_log(log_path, checkpoint_path, steps: int, resumed: Resumed, *, writes: bool) -> TrainingLog | None:
    """The run's CSV log (None: ``log_path=False``, no checkpoint to put it beside, or not rank 0)."""
    if log_path is None:
        log_path = default_log_path(checkpoint_path)
    if not log_path or not writes:
        return None
    return TrainingLog(log_path, total_steps=steps, resume_step=resumed.step if resumed.from_checkpoint else None)


class _Run:
    """The optimiser, the scheduler and the checkpoint of one :func:`fit` call, resumed
    from the checkpoint on disk when there is one."""

    def __init__(self, distiller, config: TrainConfig, optimizer, scheduler, checkpointer, resumed: Resumed,
                 data_seed: int, parallel, steps: int):
        self.distiller, self.config, self.parallel = distiller, config, parallel
        self.writes = parallel is None or parallel.is_main  # checkpoint, log and progress bar: rank 0's
        self.optimizer, self.scheduler, self.checkpointer = optimizer, scheduler, checkpointer
        self.resumed, self.data_seed, self.steps = resumed, data_seed, steps
        self.start_step = resumed.step

    @classmethod
    def start(cls, distiller, config: TrainConfig, options, parallel, batch_sampler, checkpoint_path,
              data_seed) -> _Run:
        if parallel is not None:
            parallel.check_sampler(batch_sampler)
        writes = parallel is None or parallel.is_main  # checkpoint, log and progress bar: rank 0's
        distiller.to(options.device)
        params = [p for p in distiller.trainable_parameters() if p.requires_grad]
        if not params:
            raise ValueError("the distiller has no trainable parameters")
        optimizer = OPTIMIZERS.get(config.optimizer)(params, config)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
        numerics = options.numerics()
        if parallel is not None:
            numerics.update(parallel.numerics(distiller, options.device))
        checkpointer, resumed = None, Resumed()
        if checkpoint_path is not None:
            checkpointer = Checkpointer(checkpoint_path, config, distiller, optimizer, scheduler, numerics,
                                        writes=writes)
            resumed = checkpointer.load(
                lambda saved, step, path: check_resumed_sampler(saved, batch_sampler, step, path))
            if parallel is not None:
                parallel.check_same(resumed.step, f"the step of checkpoint {checkpoint_path} to resume from (0: "
                                                  f"none; processes on several machines need a shared file system)")
        if parallel is not None:
            parallel.share_random_state()  # after the checkpoint's: every process draws as rank 0 does
        seed = _resolve_data_seed(data_seed, resumed, checkpoint_path)
        if parallel is not None:
            seed = parallel.broadcast(seed)
        return cls(distiller, config, optimizer, scheduler, checkpointer, resumed, seed, parallel, config.steps)

    def resume_hint(self) -> str:
        return self.checkpointer.resume_hint() if self.checkpointer is not None else ""

    def checkpoint_due(self, done: int) -> bool:
        return self.checkpointer is not None and bool(self.config.checkpoint_every) \
            and done % self.config.checkpoint_every == 0

    def save(self, done: int, feed: _Feed, monitor: StepMonitor) -> None:
        self.checkpointer.save(done, sampler_state=feed.stream.sampler_state(done), last_batch=feed.last_fingerprint,
                               running_losses=monitor.running, history=self.resumed.history,
                               data_seed=self.data_seed)

    def finish(self, feed: _Feed, monitor: StepMonitor) -> None:
        """After the last step: the final checkpoint (unless written already), and under
        torchrun no process returns before rank 0 has written it."""
        checkpointer = self.checkpointer
        if checkpointer is not None and self.start_step < self.steps and checkpointer.saved_step != self.steps:
            self.save(self.steps, feed, monitor)
        if self.parallel is not None:
            self.parallel.barrier()


class _Feed:
    """The batches of steps ``start_step ..``: the resumable stream of dataset indices and
    the loader that loads them; :meth:`batch` raises a loading error at its own step."""

    def __init__(self, dataset, batch_sampler, run: _Run, options, parallel, num_workers, image_cache, desc: str):
        if num_workers is None:
            num_workers = default_num_workers(options.device,
                                              processes=parallel.local_world_size if parallel else 1)
        self.steps = run.steps
        self.stream = BatchStream(batch_sampler, run.start_step, run.steps, run.resumed.last_batch,
                                  shard=parallel.shard if parallel is not None else None)
        if image_cache is not None:
            dataset = DecodedImageCache(dataset, image_cache)
        self.loader = make_loader(dataset, self.stream, data_seed=run.data_seed, num_workers=num_workers,
                                  pin_memory=options.pin_memory)
        self.options, self.parallel, self.desc = options, parallel, desc
        self.last_fingerprint = run.resumed.last_batch
        self.batches = None  # the loader's iterator (and its worker processes), from the first batch on

    def note(self, err: BaseException, what: str, step: int) -> None:
        err.add_note(f"(raised {what} training step {step + 1} of {self.steps}, {self.desc})")

    def batch(self, step: int):
        """``(images, labels, fingerprint)`` of ``step``, on the device (labels gathered
        from every process under torchrun)."""
        if self.batches is None:
            self.batches = iter(self.loader)
        try:
            loaded = next(self.batches)
        except StopIteration:
            failed_at, error = self.stream.error or (step, RuntimeError("the batch stream ended early"))
            self.note(error, "while loading the batch of", failed_at)
            raise error from None
        except Exception as err:
            self.note(err, "while loading the batch of", step)
            raise
        if isinstance(loaded, LoadFailure):
            self.note(loaded.error, "in a DataLoader worker while loading the batch of", step)
            loaded.error.add_note("(the worker's traceback:)\n" + loaded.worker_traceback.rstrip())
            raise loaded.error
        loaded_step, fingerprint, (images, labels) = loaded
        assert loaded_step == step, f"the loader handed out the batch of step {loaded_step} at step {step}"
        images, labels = self.options.to_device(images, labels)
        if self.parallel is not None:  # images stay here; every output and label is gathered
            self.parallel.begin_batch(self.stream.global_batch_size(step))
            labels = self.parallel.gather(labels, differentiable=False)
        return images, labels, fingerprint

    def close(self) -> None:
        if self.batches is not None:
            shut_down(self.batches)


def _resolve_data_seed(data_seed: int | None, resumed: Resumed, checkpoint_path) -> int:
    """The seed of the batches' random transforms: the argument, else the checkpoint's,
    else the seed of the global torch generator (``torch.initial_seed()``)."""
    if data_seed is not None:
        if isinstance(data_seed, bool) or not isinstance(data_seed, int) or data_seed < 0:
            raise ValueError(f"data_seed must be a non-negative int or None, got {data_seed!r}")
        if resumed.data_seed is not None and resumed.data_seed != data_seed:
            raise CheckpointMismatchError(
                f"checkpoint {checkpoint_path} was written with data_seed={resumed.data_seed}, this run has "
                f"data_seed={data_seed}: the random transforms would differ. Pass the first run's data_seed, or "
                f"delete the checkpoint to start afresh.")
        return data_seed
    if resumed.data_seed is not None:
        return int(resumed.data_seed)
    return torch.initial_seed() % 2**63
