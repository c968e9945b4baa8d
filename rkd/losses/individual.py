"""Individual knowledge distillation (IKD, eq. 1): HKD (eq. 2), FitNet (eq. 3), attention transfer.

Each matches a teacher output example by example; the teacher side is always detached.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["hkd", "FitNetLoss", "attention_map", "attention_loss"]


def hkd(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0) -> Tensor:
    """Hinton's knowledge distillation, eq. 2, with the tau^2 factor applied.

    ``L = tau^2 * (1/N) sum_i KL(softmax(t_i / tau) || softmax(s_i / tau))``
    (KL summed over classes, averaged over the batch: "batchmean").

    The paper's setting "tau 4, lambda_HKD 16 as in [11]" is Hinton's tau^2 gradient
    correction: the authors' classification code multiplies the plain batch-mean KL by
    ``kd_ratio = 16`` and applies no other factor. Since this function already applies
    tau^2 = 16, a method weight of 1 reproduces the paper's HKD term exactly.

    Args:
        student_logits: [N, C] pre-softmax student outputs.
        teacher_logits: [N, C] pre-softmax teacher outputs (detached here).
        temperature: tau > 0.
    """
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"hkd expects student and teacher logits of the same [N, C] shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"hkd: temperature must be positive, got {temperature}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


class FitNetLoss(nn.Module):
    """FitNet hint loss, eq. 3: ``mean (beta(s) - t)^2`` with a linear regressor beta.

    For feature maps [N, C, H, W] beta is a 1x1 convolution C_s -> C_t; when the spatial
    sizes differ, the regressed map is adaptive-average-pooled to the teacher's H x W
    (pooling and a bias-free 1x1 convolution commute). For vectors [N, D] beta is a
    Linear D_s -> D_t. As in the authors' code, beta has no bias and starts from
    U(-0.005, 0.005), and the reduction is the mean over every element (N * C * H * W).

    ``learn_regressor=True`` (default): beta's weight is a trainable parameter of this
    loss; give it to the optimiser (the Distiller's ``trainable_parameters()`` does, and
    ``rkd.train.fit`` passes every parameter that requires grad). This is FitNet as its
    paper and the RKD paper describe it.

    ``learn_regressor=False``: beta stays at its random initialisation. Its weight is
    still a parameter (so it is in the state_dict and follows ``.to()``), but with
    ``requires_grad=False``, so it receives no gradient and no optimiser that skips such
    parameters (``rkd.train.fit``; torch's Adam and SGD) changes it. This is what the
    authors' ``run_distill_fitnet.py`` did: its regressors (``metric/loss.py``,
    ``FitNet``) were never given to the optimiser, so the paper's FitNet column was
    trained through fixed random regressors.
    """

    def __init__(self, student_channels: int, teacher_channels: int, spatial: bool = True,
                 learn_regressor: bool = True):
        super().__init__()
        if student_channels < 1 or teacher_channels < 1:
            raise ValueError(
                f"FitNetLoss: channel counts must be positive, got {student_channels} -> {teacher_channels}"
            )
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.spatial = bool(spatial)
        self.learn_regressor = bool(learn_regressor)
        if self.spatial:
            self.regressor = nn.Conv2d(student_channels, teacher_channels, kernel_size=1, bias=False)
        else:
            self.regressor = nn.Linear(student_channels, teacher_channels, bias=False)
        nn.init.uniform_(self.regressor.weight, -0.005, 0.005)
        self.regressor.weight.requires_grad_(self.learn_regressor)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Eq. 3: the mean over every element of ``(beta(student) - teacher)^2``, a scalar;
        ``student`` and ``teacher`` are [N, C, H, W] feature maps (``spatial``) or [N, D]
        vectors, the teacher detached.

        Raises:
            ValueError: inputs of another rank, channel counts other than the ones the loss
                was built for, or batch sizes that differ.
        """
        expected_dim = 4 if self.spatial else 2
        if student.dim() != expected_dim or teacher.dim() != expected_dim:
            layout = "[N, C, H, W] feature maps" if self.spatial else "[N, D] vectors"
            raise ValueError(
                f"FitNetLoss({self.student_channels} -> {self.teacher_channels}) expects {layout}, got "
                f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}"
            )
        if student.shape[1] != self.student_channels or teacher.shape[1] != self.teacher_channels:
            raise ValueError(
                f"FitNetLoss was built for {self.student_channels} -> {self.teacher_channels} channels, got "
                f"student {student.shape[1]} and teacher {teacher.shape[1]}"
            )
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f"FitNetLoss: batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})")
        regressed = self.regressor(student)
        if self.spatial and regressed.shape[-2:] != teacher.shape[-2:]:
            regressed = F.adaptive_avg_pool2d(regressed, teacher.shape[-2:])
        return F.mse_loss(regressed, teacher.detach())

    def extra_repr(self) -> str:
        return (f"{self.student_channels} -> {self.teacher_channels}, spatial={self.spatial}, "
                f"learn_regressor={self.learn_regressor}")


def _spatial_energy(features: Tensor) -> Tensor:
    if features.dim() != 4:
        raise ValueError(f"attention maps need [N, C, H, W] feature maps, got shape {tuple(features.shape)}")
    return features.pow(2).mean(dim=1, keepdim=True)  # [N, 1, H, W]


def attention_map(features: Tensor) -> Tensor:
    """Attention map of Zagoruyko & Komodakis: the channel mean of squares, flattened and
    L2-normalised per example: [N, C, H, W] -> [N, H*W]."""
    return F.normalize(_spatial_energy(features).flatten(1), dim=1)


def attention_loss(student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor]) -> Tensor:
    """Attention transfer: ``sum_b mean_{n,p} (a_s[b][n, p] - a_t[b][n, p])^2``.

    For each block b, the two feature maps' channel-mean-of-squares are
    adaptive-average-pooled to the smaller of the two spatial sizes, flattened and
    L2-normalised (:func:`attention_map`); the block's loss is the mean squared difference
    over the N x H*W entries. Blocks are SUMMED, as in the authors' code (their
    lambda_Attention = 50 was tuned with the sum over blocks 2, 3 and 4), not averaged.
    Teacher maps are detached. A pair that reduces to a 1x1 map raises ValueError: its
    normalised attention is always 1, so its loss would be identically zero.
    """
    if len(student_maps) != len(teacher_maps) or len(student_maps) == 0:
        raise ValueError(
            f"attention_loss needs the same non-zero number of student and teacher maps, got "
            f"{len(student_maps)} and {len(teacher_maps)}"
        )
    total = None
    for index, (student, teacher) in enumerate(zip(student_maps, teacher_maps)):
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f"attention_loss: batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})")
        s_energy, t_energy = _spatial_energy(student), _spatial_energy(teacher.detach())
        size = (min(s_energy.shape[-2], t_energy.shape[-2]), min(s_energy.shape[-1], t_energy.shape[-1]))
        if size[0] * size[1] == 1:
            raise ValueError(
                f"attention_loss: map pair {index} reduces to a 1x1 map "
                f"(student {tuple(student.shape)}, teacher {tuple(teacher.shape)}), whose normalised attention "
                "is always 1, so the loss would be identically zero; use larger inputs or earlier blocks"
            )
        if s_energy.shape[-2:] != size:
            s_energy = F.adaptive_avg_pool2d(s_energy, size)
        if t_energy.shape[-2:] != size:
            t_energy = F.adaptive_avg_pool2d(t_energy, size)
        block = (F.normalize(s_energy.flatten(1), dim=1) - F.normalize(t_energy.flatten(1), dim=1)).pow(2).mean()
        total = block if total is None else total + block
    return total
