"""The Distiller: a student, a frozen teacher and a method's loss terms in one module."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from rkd.losses.terms import LOSS_TERMS, TermContext
from rkd.methods import Method

__all__ = ["Distiller"]


class Distiller(nn.Module):
    """Student + frozen teacher + the loss terms of a :class:`~rkd.methods.Method`.

    - The teacher is frozen: ``requires_grad`` False, always in eval mode (``train()``
      never switches it back), run under ``torch.no_grad()`` and only when the current
      stage has a term that reads it. It may be None when no term of the method needs it.
    - Every term of every stage is built once, at construction, into ``self.terms`` (an
      ``nn.ModuleDict``), so FitNet regressors and RRD projections and queue persist
      across stages and appear in ``state_dict()``.
    - ``forward(x, labels)`` returns ``{term name: weight * loss}`` for the terms of the
      current stage; the training loop sums the values.
    - ``trainable_parameters()`` is the student's and the terms' parameters: give it to
      the optimiser.

    Args:
        student, teacher: models following the output contract (``model(x) -> dict``).
        method: from :func:`rkd.methods.get_method`.
        context: dimensions for the term factories (``TermContext.from_models`` reads them).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, method: Method, context: TermContext):
        super().__init__()
        self.student = student
        self.method = method
        self.terms = nn.ModuleDict(
            {name: LOSS_TERMS.get(name)(context, **method.options_for(name)) for name in method.term_names}
        )
        needing = [name for name, term in self.terms.items() if term.needs_teacher]
        if teacher is None and needing:
            raise ValueError(
                f"method {method.name!r} needs a teacher for its loss terms {needing}; pass teacher=<model>"
            )
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()
        self.teacher = teacher
        self.stage_index = 0

    # ------------------------------------------------------------------ stages

    @property
    def stage(self):
        return self.method.stages[self.stage_index]

    def set_stage(self, index: int) -> None:
        if not 0 <= index < len(self.method.stages):
            raise ValueError(
                f"method {self.method.name!r} has stages 0..{len(self.method.stages) - 1} "
                f"({[s.name for s in self.method.stages]}), got {index}"
            )
        self.stage_index = int(index)

    def stage_at(self, step: int, total_steps: int) -> int:
        """The stage index for ``step`` of ``total_steps`` (see :meth:`Method.stage_at`)."""
        return self.method.stage_at(step, total_steps)

    # ------------------------------------------------------------------ modes and parameters

    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Student parameters, then the terms' (FitNet regressors, RRD projections)."""
        seen: set[int] = set()
        params = []
        for p in [*self.student.parameters(), *self.terms.parameters()]:
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        return params

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, labels: Tensor, *, teacher_x: Tensor | None = None,
                return_outputs: bool = False):
        """Weighted losses of the current stage: ``{term: weight * loss}``.

        ``teacher_x`` feeds the teacher a differently preprocessed batch when needed
        (default: ``x``). With ``return_outputs=True`` returns ``(losses, student_outputs)``.
        """
        stage = self.stage
        student_outputs = self.student(x)
        if not isinstance(student_outputs, Mapping):
            raise TypeError(
                f"the student must return a dict of outputs (model output contract), got "
                f"{type(student_outputs).__name__}"
            )
        teacher_outputs = None
        if any(self.terms[name].needs_teacher for name in stage.terms):
            if self.teacher.training:  # someone called teacher.train() directly
                self.teacher.eval()
            with torch.no_grad():
                teacher_outputs = self.teacher(x if teacher_x is None else teacher_x)
        losses = {
            name: weight * self.terms[name](student_outputs, teacher_outputs, labels)
            for name, weight in stage.terms.items()
        }
        return (losses, student_outputs) if return_outputs else losses

    def extra_repr(self) -> str:
        return f"method={self.method.name!r}, task={self.method.task!r}, stage={self.stage_index}"
