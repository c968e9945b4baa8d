"""The training loop: :func:`fit`.

Reading order: :mod:`.stream` (which indices each step loads, resumable), :mod:`.loader`
(how a batch is loaded: workers, seeds, pinning), :mod:`.step` (precision, memory
format, the teacher under inference_mode), :mod:`.guard` (NaN/inf), :mod:`.checkpoint`
(what a resume needs, checked), :mod:`.log` (the CSV), :mod:`.distributed` (several
processes under torchrun). This module only puts them in order, step after step.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..progress import progress_bar
from .checkpoint import Checkpointer, CheckpointMismatchError, Resumed, rng_state, set_rng_state
from .config import OPTIMIZERS, TrainConfig, TrainResult
from .distributed import DataParallel
from .guard import NonFiniteGuard
from .image_cache import DecodedImageCache
from .loader import LoadFailure, default_num_workers, make_loader, shut_down
from .log import TrainingLog, default_log_path
from .step import lean_models, resolve_step_options
from .stream import BatchStream, check_resumed_sampler

__all__ = ["fit"]


def fit(
    distiller: nn.Module,
    dataset: Dataset,
    batch_sampler,
    config: TrainConfig,
    *,
    device: str | torch.device = "cpu",
    checkpoint_path: str | Path | None = None,
    evaluate: Callable[[], dict[str, Any]] | None = None,
    eval_every: int = 0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    desc: str = "train",
    log_path: str | Path | bool | None = None,
    num_workers: int | None = None,
    data_seed: int | None = None,
    image_cache: str | Path | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    compile: bool | str = False,
    check_every: int | None = None,
) -> TrainResult:
    """Train ``distiller`` for ``config.steps`` steps and return its losses and metrics.

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

    Raises:
        NonFiniteLossError: NaN or inf in a batch, in the student's ``"embedding"`` /
            ``"logits"`` or in a loss term, naming the step (see :mod:`rkd.train.guard`).
            Any other error raised inside a step, or while loading its batch, carries a
            note naming the step.
        CheckpointMismatchError: see above.
    """
    options = resolve_step_options(device, precision=precision, channels_last=channels_last, compile=compile,
                                   check_every=check_every)
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be an int >= 0 (0: evaluate only after the last step), got {eval_every!r}")
    parallel = DataParallel.current()  # None: this process trains alone
    if parallel is not None:
        parallel.check_sampler(batch_sampler)
    writes = parallel is None or parallel.is_main  # checkpoint, log and progress bar: rank 0's
    if num_workers is None:
        num_workers = default_num_workers(options.device, processes=parallel.local_world_size if parallel else 1)
    distiller.to(options.device)
    params = [p for p in distiller.trainable_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the distiller has no trainable parameters")
    optimizer = OPTIMIZERS.get(config.optimizer)(params, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.milestones), config.gamma)
    numerics = options.numerics()
    if parallel is not None:
        numerics.update(parallel.numerics(distiller, options.device))

    checkpointer = None
    resumed = Resumed()
    if checkpoint_path is not None:
        checkpointer = Checkpointer(checkpoint_path, config, distiller, optimizer, scheduler, numerics, writes=writes)
        resumed = checkpointer.load(
            lambda saved, step, path: check_resumed_sampler(saved, batch_sampler, step, path))
        if parallel is not None:
            parallel.check_same(resumed.step, f"the step of checkpoint {checkpoint_path} to resume from (0: none; "
                                              f"processes on several machines need a shared file system)")
    if parallel is not None:
        parallel.share_random_state()  # after the checkpoint's: every process draws as rank 0 does
    data_seed = _resolve_data_seed(data_seed, resumed, checkpoint_path)
    if parallel is not None:
        data_seed = parallel.broadcast(data_seed)
    start_step, steps = resumed.step, config.steps
    window = max(1, min(len(batch_sampler), steps))
    running = resumed.running_losses
    history = resumed.history
    stream = BatchStream(batch_sampler, start_step, steps, resumed.last_batch,
                         shard=parallel.shard if parallel is not None else None)
    if image_cache is not None:
        dataset = DecodedImageCache(dataset, image_cache)
    loader = make_loader(dataset, stream, data_seed=data_seed, num_workers=num_workers,
                         pin_memory=options.pin_memory)
    if log_path is None:
        log_path = default_log_path(checkpoint_path)
    log = (TrainingLog(log_path, total_steps=steps,
                       resume_step=start_step if resumed.from_checkpoint else None) if log_path and writes else None)
    guard = NonFiniteGuard(getattr(distiller, "student", None), total_steps=steps, desc=desc, lr=config.lr,
                           check_every=options.check_every,
                           resume_hint=checkpointer.resume_hint if checkpointer else (lambda: ""), parallel=parallel)

    def save(done: int, last_batch: str | None) -> None:
        checkpointer.save(done, sampler_state=stream.sampler_state(done), last_batch=last_batch,
                          running_losses=running, history=history, data_seed=data_seed)

    def note(err: BaseException, what: str, step: int) -> None:
        err.add_note(f"(raised {what} training step {step + 1} of {steps}, {desc})")

    distiller.train()
    bar = progress_bar(steps, initial=start_step, desc=desc, enabled=progress and writes)
    batches = None
    completed = False
    try:
        replicated = parallel.replicate(distiller, options.device) if parallel is not None else nullcontext(distiller)
        with lean_models(distiller, options, parallel) as lean, replicated as model:
            # a finished run started again trains nothing: no worker processes for it
            batches = iter(loader) if start_step < steps else iter(())
            last_fingerprint = resumed.last_batch
            for step in range(start_step, steps):
                done = step + 1
                # ---------------------------------------------------------- the batch
                try:
                    loaded = next(batches)
                except StopIteration:
                    failed_at, error = stream.error or (step, RuntimeError("the batch stream ended early"))
                    note(error, "while loading the batch of", failed_at)
                    raise error from None
                except Exception as err:
                    note(err, "while loading the batch of", step)
                    raise
                if isinstance(loaded, LoadFailure):
                    note(loaded.error, "in a DataLoader worker while loading the batch of", step)
                    loaded.error.add_note("(the worker's traceback:)\n" + loaded.worker_traceback.rstrip())
                    raise loaded.error
                loaded_step, fingerprint, (images, labels) = loaded
                assert loaded_step == step, f"the loader handed out the batch of step {loaded_step} at step {step}"
                # ---------------------------------------------------------- forward
                distiller.set_stage(distiller.stage_at(step, steps))
                images, labels = options.to_device(images, labels)
                if parallel is not None:  # images stay here; every output and label is gathered
                    parallel.begin_batch(stream.global_batch_size(step))
                    labels = parallel.gather(labels, differentiable=False)
                input_ok = guard.begin_step(images)
                try:
                    losses = model(images, labels)
                except Exception as err:
                    problem = guard.explain(step, input_ok)
                    if problem is not None:
                        raise problem from err
                    note(err, "in", step)
                    raise
                total = sum(losses.values())
                guard.record(step, losses, input_ok)
                checkpoint_due = checkpointer is not None and config.checkpoint_every \
                    and done % config.checkpoint_every == 0
                eval_due = evaluate is not None and eval_every and done % eval_every == 0 and done < steps
                # ---------------------------------------------------------- the host reads the losses
                read = []
                if guard.due(done) or checkpoint_due or eval_due or done == steps:
                    for read_step, values in guard.flush(step):  # raises before this step's update
                        for name, value in values.items():
                            running.setdefault(name, []).append(value)
                            del running[name][:-window]
                        read.append((read_step + 1, {name: vals[-1] for name, vals in running.items()}, values))
                        if log is not None:
                            log.add_losses(read_step + 1, values)
                # ---------------------------------------------------------- update
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                scheduler.step()
                last_fingerprint = fingerprint
                if eval_due:
                    with lean.suspended():
                        metrics = _evaluate_without_side_effects(evaluate, distiller)
                    history.append({"step": done, **metrics})
                    if log is not None:
                        log.add_eval(done, metrics)
                if log is not None:
                    log.flush()  # before the checkpoint: the log on disk covers every checkpointed step
                if checkpoint_due:
                    save(done, fingerprint)
                bar.update(1)
                for read_done, latest, values in read:
                    if on_step is not None:
                        on_step(read_done, latest)
                    if read_done % 10 == 0 or read_done == steps:
                        bar.set_postfix(loss=f"{sum(values.values()):.4f}")
            if checkpointer is not None and start_step < steps and checkpointer.saved_step != steps:
                save(steps, last_fingerprint)
            if parallel is not None:
                parallel.barrier()  # no process returns before rank 0 has written the last checkpoint
        completed = True
    finally:
        bar.close()
        guard.close()
        if batches is not None:
            shut_down(batches)
        if log is not None and not completed:
            log.close(complete=False)

    distiller.eval()
    try:
        metrics = evaluate() if evaluate is not None else {}
    except BaseException:
        if log is not None:
            log.close(complete=False)
        raise
    if evaluate is not None:
        history = [entry for entry in history if entry.get("step") != steps] + [{"step": steps, **_plain(metrics)}]
    if log is not None:
        if evaluate is not None:
            log.add_eval(steps, metrics)
        log.close(complete=True)
    return TrainResult(
        steps=steps,
        resumed_from=start_step,
        losses={k: sum(v) / len(v) for k, v in running.items()},
        metrics=metrics,
        history=history,
    )


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


def _evaluate_without_side_effects(evaluate: Callable[[], dict[str, Any]], distiller: nn.Module) -> dict[str, Any]:
    """``evaluate()`` with every global random state put back afterwards and the
    distiller back in training mode: a periodic evaluation leaves the run's result as it was."""
    saved = rng_state()
    try:
        metrics = dict(evaluate())
    finally:
        set_rng_state(saved)
        distiller.train()
    return {str(k): _plain(v) for k, v in metrics.items()}


def _plain(value: Any) -> Any:
    """A metric as a checkpoint can hold it (weights_only): numbers, strings, None, and
    dicts and lists of them (few-shot metrics are ``{"5-way": {"accuracy": ..., "ci95": ...}}``)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, int, str, type(None))):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return repr(value)
