"""Relational Representation Distillation (Giakoumoglou & Stathaki, 2024), carried beside
RKD: the student's similarities to a queue of past teacher embeddings matched to the
teacher's (:class:`RRDLoss`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["RRDLoss"]


class RRDLoss(nn.Module):
    """Relational Representation Distillation (Giakoumoglou & Stathaki, 2024).

    Student and teacher embeddings are projected to ``feat_dim`` by ``embed_s`` /
    ``embed_t`` (Linear) and L2-normalised. Against a FIFO queue of past (projected,
    normalised) teacher embeddings Q, the teacher distribution is
    ``p_t = softmax(z_t Q^T / tau_t)`` and the student's ``p_s = softmax(z_s Q^T / tau_s)``.
    The loss is the cross-entropy ``-sum_q p_t log p_s`` with p_t detached, averaged over
    the batch. In training mode the batch's teacher embeddings then replace the oldest
    queue rows (wrapping around; any batch size, a batch larger than the queue keeps its
    last ``queue_size`` rows); in eval mode the queue is left alone.

    Version followed: the RRD code of 2024, ``distillers/RRD.py`` of
    ``giakoumoglou/distillers`` (the repository ``giakoumoglou/rrd`` points to), whose
    ``train_student.py`` defaults are ``nce_t_s = 0.04``, ``nce_t_t = 0.10`` and whose
    loss enqueues the batch *after* computing the similarities. These are the defaults
    here (tau_s < tau_t: the student's distribution is the sharper one).

    The later code (``cifar/distillers/RRD.py``, ``RRD_FifoMemory_Loss``, with
    ``cifar/train_student.py`` defaults ``nce_t_s = 0.1``, ``nce_t_t = 0.02``) enqueues the
    batch *before* computing the similarities, so each example's own teacher key is among
    its anchors, and makes the teacher's distribution the sharper one. Get it with
    ``enqueue_before_loss=True, tau_s=0.1, tau_t=0.02``.

    One difference from every version of their code: they normalise the random initial
    queue along dim 0 (each of its ``feat_dim`` columns has unit norm, so its rows are
    nearly zero); here each initial row is a unit vector, like the keys that replace
    them. Only the first ``queue_size / batch`` steps see initial rows.

    Buffers: ``queue`` [queue_size, feat_dim] (random unit rows at init, drawn from the
    global torch RNG) and ``queue_ptr`` (long scalar, next row to overwrite); both are in
    the state_dict.
    """

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        feat_dim: int = 128,
        queue_size: int = 16384,
        tau_s: float = 0.04,
        tau_t: float = 0.10,
        enqueue_before_loss: bool = False,
    ):
        super().__init__()
        for name, value in (("student_dim", student_dim), ("teacher_dim", teacher_dim),
                            ("feat_dim", feat_dim), ("queue_size", queue_size)):
            if int(value) < 1:
                raise ValueError(f"RRDLoss: {name} must be a positive integer, got {value}")
        if tau_s <= 0 or tau_t <= 0:
            raise ValueError(f"RRDLoss: temperatures must be positive, got tau_s={tau_s}, tau_t={tau_t}")
        self.tau_s = float(tau_s)
        self.tau_t = float(tau_t)
        self.enqueue_before_loss = bool(enqueue_before_loss)
        self.embed_s = nn.Linear(student_dim, feat_dim)
        self.embed_t = nn.Linear(teacher_dim, feat_dim)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, feat_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        """The number of rows (anchors) of the queue."""
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` [B, feat_dim] over the oldest queue rows, wrapping around."""
        size = self.queue_size
        start = int(self.queue_ptr)
        batch = keys.shape[0]
        # Key b goes to row (start + b) % size; when the batch is longer than the queue
        # only its last `size` keys survive, so only those are written.
        first_kept = max(0, batch - size)
        rows = (torch.arange(first_kept, batch, device=self.queue.device) + start) % size
        self.queue[rows] = keys[first_kept:].to(self.queue.dtype)
        self.queue_ptr.fill_((start + batch) % size)

    def forward(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The RRD loss of ``student`` [N, D_s] and ``teacher`` [N, D_t] embeddings: the
        cross-entropy ``-sum_q p_t log p_s`` over the queue's anchors, mean over the batch
        (a scalar tensor; gradient to the student and ``embed_s`` only). In training mode
        it enqueues the batch's teacher keys, after the loss (before it with
        ``enqueue_before_loss``).

        Raises:
            ValueError: inputs that are not 2-D, or batch sizes that differ.
        """
        if student.dim() != 2 or teacher.dim() != 2:
            raise ValueError(
                f"RRDLoss expects [N, D] embeddings, got student {tuple(student.shape)} and "
                f"teacher {tuple(teacher.shape)}"
            )
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(
                f"RRDLoss: student and teacher batch sizes differ ({student.shape[0]} vs {teacher.shape[0]})"
            )
        student_keys = F.normalize(self.embed_s(student), dim=1)
        with torch.no_grad():
            teacher_keys = F.normalize(self.embed_t(teacher.detach()), dim=1)
            if self.training and self.enqueue_before_loss:
                self.enqueue(teacher_keys)
            anchors = self.queue.clone()  # a later enqueue must not alter what was used
            teacher_probs = F.softmax(teacher_keys @ anchors.T / self.tau_t, dim=1)
        student_log_probs = F.log_softmax(student_keys @ anchors.T / self.tau_s, dim=1)
        loss = -(teacher_probs * student_log_probs).sum(dim=1).mean()
        if self.training and not self.enqueue_before_loss:
            self.enqueue(teacher_keys)
        return loss

    def extra_repr(self) -> str:
        return (f"queue_size={self.queue_size}, tau_s={self.tau_s}, tau_t={self.tau_t}, "
                f"enqueue_before_loss={self.enqueue_before_loss}")
