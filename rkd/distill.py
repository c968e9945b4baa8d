"""The Distiller: a student, a frozen teacher and a method's loss terms in one module."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from rkd.losses.terms import LOSS_TERMS, TermContext
from rkd.methods import Method

__all__ = ["Distiller", "PrecomputedTeacher", "PrecomputedRows"]


class Distiller(nn.Module):
    """Student + frozen teacher + the loss terms of a :class:`~rkd.methods.Method`.

    - The teacher is frozen: ``requires_grad`` False, always in eval mode (``train()``
      never switches it back), run under ``torch.no_grad()`` and only when a term reads
      it. It may be None when no term of the method needs it.
    - The method has one stage: a method trained in stages (FitNet's hint stage, then the
      task) trains each as a run of its own, with :meth:`rkd.methods.Method.only_stage`.
    - Every term is built once, at construction, into ``self.terms`` (an
      ``nn.ModuleDict``), so FitNet regressors and RRD projections and queue appear in
      ``state_dict()``.
    - ``forward(x, labels)`` returns ``{term name: weight * loss}``; the training loop
      sums the values.
    - ``trainable_parameters()`` is the student's and the terms' parameters: give it to
      the optimiser.

    Args:
        student, teacher: models following the output contract (``model(x) -> dict``).
        method: from :func:`rkd.methods.get_method`.
        context: dimensions for the term factories (``TermContext.from_models`` reads them).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, method: Method, context: TermContext):
        super().__init__()
        if len(method.stages) != 1:
            raise ValueError(
                f"method {method.name!r} trains in {len(method.stages)} stages "
                f"({', '.join(s.name for s in method.stages)}): train each as a run of its own, with "
                f"method.only_stage(0), then method.only_stage(1) starting from the first's model "
                f"(rkd.runs does this for the experiments)")
        self.student = student
        self.method = method
        self.terms = nn.ModuleDict(
            {name: LOSS_TERMS.get(name).build(context, **method.options_for(name)) for name in method.term_names}
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

    # ------------------------------------------------------------------ modes and parameters

    def train(self, mode: bool = True) -> Distiller:
        """Set the student and the terms to training (``mode`` True) or eval mode, as
        ``nn.Module.train`` does, but keep the teacher in eval mode; returns ``self``."""
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
        """Weighted losses: ``{term: weight * loss}``.

        ``teacher_x`` feeds the teacher a differently preprocessed batch when needed
        (default: ``x``). With ``return_outputs=True`` returns ``(losses, student_outputs)``.
        """
        stage = self.method.stages[0]
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
        return f"method={self.method.name!r}, task={self.method.task!r}"


class PrecomputedTeacher(nn.Module):
    """A frozen teacher whose outputs for a fixed set of images are computed once.

    When the training images carry no random augmentation (the ci stand-ins, decoded
    caches), every batch is a selection of the same images, and a frozen teacher in eval
    mode gives each image the same outputs whatever batch it comes in: computing them
    once, instead of a teacher forward pass every step, makes a distilled student cost
    about what a student trained alone costs. Outputs are looked up by the image's bytes
    (an image that appears several times in the set gets the outputs of its first
    appearance); an image outside the set (a caller's own batch) goes through the teacher
    as usual. The values equal a per-batch forward pass up to the last bits of float
    rounding.

    A lookup returns a read-only mapping that gathers an output's rows when a loss term
    first reads it: a method that reads only the embedding never copies the feature maps.
    The gathered tensors are ordinary ones (never inference tensors), usable in autograd
    graphs whatever mode the lookup ran in.

    Attributes of the wrapped teacher (``embedding_dim``, ``tap_channels``, ...) are its own.
    """

    def __init__(self, teacher: nn.Module, dataset, *, batch_size: int = 500):
        super().__init__()
        self.teacher = teacher.eval().requires_grad_(False)
        device = next(teacher.parameters()).device
        index: dict[bytes, int] = {}
        outputs: dict[str, list[Tensor]] = {}
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                images = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
                for offset, key in enumerate(_image_bytes(images)):
                    index.setdefault(key, start + offset)
                for key, value in teacher(images.to(device)).items():
                    outputs.setdefault(key, []).append(value.detach())
        self.index = index
        self.outputs = {key: torch.cat(values) for key, values in outputs.items()}

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("teacher"), name)

    def train(self, mode: bool = True) -> PrecomputedTeacher:
        """Stay in eval mode whatever ``mode`` says (the teacher is frozen); returns ``self``."""
        return super().train(False)  # frozen, always

    def forward(self, x: Tensor) -> Mapping[str, Tensor]:
        """The teacher's outputs for the batch ``x``: a :class:`PrecomputedRows` mapping of
        the stored outputs when every image of ``x`` is in the set, else the teacher's own
        forward pass of ``x``."""
        rows = [self.index.get(key) for key in _image_bytes(x)]
        if None in rows:
            return self.teacher(x)
        return PrecomputedRows(self.outputs, torch.tensor(rows, dtype=torch.long), x.device)


class PrecomputedRows(Mapping):
    """The precomputed outputs of some rows (:class:`PrecomputedTeacher`'s lookup): output
    name -> its rows on ``device``, each gathered when first read."""

    def __init__(self, outputs: Mapping[str, Tensor], rows: Tensor, device: torch.device):
        self._outputs, self._rows, self._device = outputs, rows, device
        self._gathered: dict[str, Tensor] = {}

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._gathered:
            with torch.inference_mode(False):  # an ordinary tensor even when read in inference mode
                self._gathered[key] = self._outputs[key].index_select(0, self._rows).to(self._device)
        return self._gathered[key]

    def __iter__(self):
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)


def _image_bytes(images: Tensor) -> list[bytes]:
    """The bytes of each image of the batch ``images`` (row-major, as ``image.numpy().tobytes()``)."""
    data = images.detach().cpu().contiguous().numpy().tobytes()  # one copy for the batch, then slices of it
    size = len(data) // len(images) if len(images) else 0
    return [data[i * size:(i + 1) * size] for i in range(len(images))]
