"""The lean step: bf16 autocast within mixed-precision tolerance of float32, the teacher
under inference_mode with exactly the losses and gradients of no_grad, the CUDA options,
and the NaN/inf guard reading the device every k steps."""
from __future__ import annotations

from unittest import mock

import pytest
import torch

from rkd.train import NonFiniteLossError, TrainConfig, fit
from rkd.train.step import lean_models, resolve_step_options
from test_distill import ALL_STAGES, make_batch
from test_distill import make_distiller as make_tiny_distiller
from test_train import assert_same_state, make_distiller, train


def losses_and_gradients(make, x, labels, stage=0, lean=True, **options):
    """One forward and backward of a fresh ``make(stage)`` distiller (RRD's queue changes in
    the forward pass), from one random state (the triplet sampler draws
    from it); through :func:`lean_models` with ``options`` when ``lean``."""
    distiller = make(stage).train()
    torch.manual_seed(11)
    if lean:
        with lean_models(distiller, resolve_step_options("cpu", **options)):
            losses = distiller(x, labels)
    else:
        losses = distiller(x, labels)
    sum(losses.values()).backward()
    grads = {name: p.grad.clone() for name, p in distiller.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads


@pytest.mark.parametrize("name, task, stage", ALL_STAGES)
def test_the_teacher_under_inference_mode_gives_exactly_the_losses_and_gradients_of_no_grad(name, task, stage):
    def make(stage):
        return make_tiny_distiller(name, task, stage=stage)

    x, labels = make_batch(task)
    plain, plain_grads = losses_and_gradients(make, x, labels, stage, lean=False)
    lean, lean_grads = losses_and_gradients(make, x, labels, stage, precision="fp32")
    assert {k: v.item() for k, v in lean.items()} == {k: v.item() for k, v in plain.items()}
    assert plain_grads.keys() == lean_grads.keys()
    for n in plain_grads:
        assert torch.equal(plain_grads[n], lean_grads[n]), (name, n)
    assert not any(n.startswith("teacher.") for n in lean_grads)



def test_the_teacher_runs_in_inference_mode_and_the_wrapping_is_gone_after_the_run():
    distiller = make_tiny_distiller("FitNet", "metric")
    modes = []
    inner = next(iter(distiller.teacher.children()))  # its hooks run inside the teacher's forward
    inner.register_forward_hook(lambda *args: modes.append(torch.is_inference_mode_enabled()))
    x, labels = make_batch("metric")
    with lean_models(distiller, resolve_step_options("cpu", precision="bf16")) as lean:
        distiller(x, labels)
        assert modes == [True]
        assert "forward" in vars(distiller.teacher) and "forward" in vars(distiller.student)
        with lean.suspended():
            assert "forward" not in vars(distiller.teacher) and "forward" not in vars(distiller.student)
        assert "forward" in vars(distiller.teacher)
    assert "forward" not in vars(distiller.teacher) and "forward" not in vars(distiller.student)


def test_inference_tensors_must_be_cloned_for_the_loss_terms():
    """Why the lean step clones the teacher's outputs: FitNet's MSE saves its target (a
    teacher feature) for backward, which an inference tensor may not be."""
    distiller = make_tiny_distiller("FitNet", "metric").train()
    x, labels = make_batch("metric")
    forward = distiller.teacher.forward

    def raw_inference(*args):
        with torch.inference_mode():
            return forward(*args)

    distiller.teacher.forward = raw_inference
    with pytest.raises(RuntimeError, match="Inference tensors cannot be saved for backward"):
        sum(distiller(x, labels).values()).backward()


@pytest.mark.parametrize("method", ["RKD-DA", "RRD", "Triplet", "FitNet", "DarkRank", "Attention"])
def test_bf16_autocast_losses_equal_float32_within_mixed_precision_tolerance(method):
    def make(stage):
        return make_tiny_distiller(method, "metric", stage=stage)

    x, labels = make_batch("metric", seed=3)
    reference, _ = losses_and_gradients(make, x, labels, precision="fp32")
    mixed, _ = losses_and_gradients(make, x, labels, precision="bf16")
    assert mixed.keys() == reference.keys()
    for term in reference:
        assert mixed[term].dtype == torch.float32  # the terms compute in float32
        # bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.2 %) through three conv layers
        torch.testing.assert_close(mixed[term], reference[term], rtol=3e-2, atol=1e-3, msg=f"{method} {term}")
    assert any(not torch.equal(mixed[t], reference[t]) for t in reference), "bf16 must really have run"


def test_fit_in_bf16_on_the_cpu_starts_where_float32_does():
    """The first step's losses (same weights, same batch) agree within mixed-precision
    tolerance; later steps follow other trajectories, as any change of rounding makes them."""
    _, _, reference = train(None, method="RKD-DA", num_workers=0)
    _, _, mixed = train(None, method="RKD-DA", num_workers=0, precision="bf16")
    assert mixed[0][1].keys() == reference[0][1].keys()
    for term, value in reference[0][1].items():
        assert mixed[0][1][term] == pytest.approx(value, rel=3e-2), term
    assert mixed[0][1] != reference[0][1]


def test_options_on_cuda_and_on_the_cpu():
    cpu = resolve_step_options("cpu")
    assert (cpu.precision, cpu.channels_last, cpu.pin_memory, cpu.non_blocking, cpu.check_every) == \
           ("fp32", False, False, False, 1)
    with mock.patch("torch.cuda.is_available", return_value=True), \
            mock.patch("torch.cuda.is_bf16_supported", return_value=True):
        cuda = resolve_step_options("cuda")
    assert (cuda.precision, cuda.channels_last, cuda.pin_memory, cuda.non_blocking, cuda.check_every) == \
           ("bf16", True, True, True, 10)
    assert cuda.autocast_dtype == torch.bfloat16 and cpu.autocast_dtype is None
    assert cuda.numerics() == {"precision": "bf16", "channels_last": True, "compile": None}
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid names: bf16, fp32"):
        resolve_step_options("cpu", precision="fp16")
    with pytest.raises(ValueError, match="check_every must be a positive int"):
        resolve_step_options("cpu", check_every=0)


def test_channels_last_moves_the_networks_and_the_images():
    options = resolve_step_options("cpu", channels_last=True)
    images, labels = options.to_device(torch.randn(2, 3, 8, 8), torch.tensor([0, 1]))
    assert images.is_contiguous(memory_format=torch.channels_last)
    distiller = make_distiller("RKD-DA")
    with lean_models(distiller, options):
        conv = next(p for p in distiller.student.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last)
    result, _, _ = train(None, method="RKD-DA", num_workers=0, channels_last=True)
    reference, _, _ = train(None, method="RKD-DA", num_workers=0)
    for term, value in reference.losses.items():
        assert result.losses[term] == pytest.approx(value, rel=1e-4), term


@pytest.mark.slow
def test_compile_runs_the_same_steps():
    """The compile path with the "eager" backend (inductor needs a C++ toolchain and
    minutes on a small CPU): same graph, same numbers."""
    reference, reference_state, _ = train(None, method="RKD-DA", num_workers=0, config=TrainConfig(steps=3))
    compiled, state, _ = train(None, method="RKD-DA", num_workers=0, config=TrainConfig(steps=3), compile="eager")
    assert compiled.losses == reference.losses
    assert_same_state(state, reference_state)


def test_reading_the_losses_every_k_steps_changes_nothing_but_when_on_step_is_called():
    reference, reference_state, reference_steps = train(None, num_workers=0)
    result, state, steps = train(None, num_workers=0, check_every=4)
    assert steps == reference_steps, "every step reported, in order, with its own losses"
    assert result.losses == reference.losses
    assert_same_state(state, reference_state)


def test_a_non_finite_value_found_k_steps_late_says_which_updates_were_applied(tmp_path):
    from test_bad_inputs import Constant, distiller_for
    from rkd.data import MPerClassSampler

    sampler = MPerClassSampler(Constant().targets, m=3, batch_size=6, seed=0)
    first_epoch = [batch for batch in sampler]
    sampler.set_epoch(0)
    poison = next(i for i in first_epoch[1] if i not in first_epoch[0])  # first loaded at step 2
    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(NonFiniteLossError, match=r"the input batch holds NaN or inf values at step 2 of 10 \(train\); "
                                                 r"it was found by the check of step 4 \(check_every=4\), so the "
                                                 r"optimiser had already applied the updates of steps 2 to 3 with it"):
        fit(distiller_for("RKD-DA"), Constant(poison=poison), sampler, TrainConfig(steps=10), check_every=4,
            checkpoint_path=checkpoint, progress=False, num_workers=0)
    assert not checkpoint.exists(), "no checkpoint is written after a non-finite step"
