"""The introduction's figure: individual KD against the distance and angle potentials of RKD.

It redraws the idea of the paper's Figures 1 and 2 from numbers: a teacher's embedding
of five examples, and a student whose embedding is the same configuration rotated,
shrunk and moved. Individual KD (eq. 1, here the squared error of eq. 3 with the
identity for beta) sees a student far from its teacher; the distance potential
(eqs. 5-6) and the angle potential (eq. 9) are the same for both, so RKD-D and RKD-A
(eqs. 7 and 10, computed with :func:`rkd.losses.rkd_distance` and
:func:`rkd.losses.rkd_angle`) are zero. The numbers printed in the figure are computed
when it is drawn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["example_embeddings", "potentials", "draw_relational_potentials"]

#: teacher embedding of five examples in 2-D (a shape that is easy to follow by eye)
_TEACHER = np.array([[0.0, 0.0], [2.0, 0.4], [1.2, 1.9], [3.1, 2.3], [0.3, 2.8]])
_ROTATION_DEGREES = 35.0
_SCALE = 0.55
_SHIFT = np.array([4.6, -0.9])


def example_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """(teacher, student): the student is the teacher rotated, scaled and translated."""
    angle = np.deg2rad(_ROTATION_DEGREES)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    student = _SCALE * _TEACHER @ rotation.T + _SHIFT
    return _TEACHER.copy(), student


def potentials(teacher: np.ndarray, student: np.ndarray) -> dict[str, float]:
    """The losses the figure prints, computed by rkd itself (float64)."""
    import rkd  # noqa: F401  (rkd's import-time settings come before torch's)
    import torch

    from rkd.losses import rkd_angle, rkd_distance

    t = torch.as_tensor(teacher, dtype=torch.float64)
    s = torch.as_tensor(student, dtype=torch.float64)
    return {
        "ikd": float(((s - t) ** 2).sum(dim=1).mean()),
        "rkd_d": float(rkd_distance(s, t)),
        "rkd_a": float(rkd_angle(s, t)),
    }


def _mu_normalised_distance(x: np.ndarray, i: int, j: int) -> float:
    n = len(x)
    distances = np.linalg.norm(x[:, None] - x[None], axis=-1)
    mu = distances.sum() / (n * (n - 1))
    return float(distances[i, j] / mu)


def _cosine(x: np.ndarray, i: int, j: int, k: int) -> float:
    e_ij = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
    e_kj = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
    return float(e_ij @ e_kj)


TEACHER_COLOUR, STUDENT_COLOUR = "#1f5fa8", "#d9661f"
_LABELS = ["1", "2", "3", "4", "5"]


def _scatter(ax, points, colour, marker, prefix) -> None:
    ax.scatter(points[:, 0], points[:, 1], s=90, color=colour, marker=marker, zorder=3)
    for label, (x, y) in zip(_LABELS, points):
        ax.annotate(f"${prefix}_{label}$", (x, y), textcoords="offset points", xytext=(6, 5),
                    color=colour, fontsize=15)


def _individual_panel(ax, teacher: np.ndarray, student: np.ndarray, losses: dict[str, float]) -> None:
    # (a) individual KD: every student output is pulled onto its own teacher output
    _scatter(ax, teacher, TEACHER_COLOUR, "o", "t")
    _scatter(ax, student, STUDENT_COLOUR, "s", "s")
    for s_point, t_point in zip(student, teacher):
        ax.annotate("", xy=t_point, xytext=s_point,
                    arrowprops=dict(arrowstyle="->", color="0.45", lw=1.0, shrinkA=6, shrinkB=6))
    ax.set_title("Individual KD (eq. 1)\nmatch each output")
    ax.text(0.02, 0.02, f"squared error $= {losses['ikd']:.2f}$", transform=ax.transAxes, fontsize=13)


def _distance_panel(ax, teacher: np.ndarray, student: np.ndarray, losses: dict[str, float]) -> None:
    # (b) distance potential: every pair's distance over the batch's mean distance
    for points, colour in ((teacher, TEACHER_COLOUR), (student, STUDENT_COLOUR)):
        for i in range(len(points)):
            for j in range(i + 1, len(points)):
                ax.plot(*points[[i, j]].T, color=colour, lw=0.8, alpha=0.35, zorder=1)
        ax.plot(*points[[0, 3]].T, color=colour, lw=2.2, zorder=2)
    _finish_panel(ax, teacher, student, "Distances $\\psi_D$ (eqs. 5-7)\nmatch $\\Vert t_i - t_j \\Vert\\, / \\mu$",
                  f"$\\psi_D(t_1,t_4) = {_mu_normalised_distance(teacher, 0, 3):.3f}$, "
                  f"$\\psi_D(s_1,s_4) = {_mu_normalised_distance(student, 0, 3):.3f}$",
                  f"RKD-D loss $= {losses['rkd_d']:.3f}$")


def _angle_panel(ax, teacher: np.ndarray, student: np.ndarray, losses: dict[str, float]) -> None:
    from matplotlib.patches import Arc

    # (c) angle potential: the cosine of the angle at the vertex j of every triple
    i, j, k = 1, 0, 2
    for points, colour, name in ((teacher, TEACHER_COLOUR, "t"), (student, STUDENT_COLOUR, "s")):
        ax.plot(*points[[i, j]].T, color=colour, lw=1.0, ls="--", zorder=2)
        ax.plot(*points[[k, j]].T, color=colour, lw=1.0, ls="--", zorder=2)
        # the unit vectors e^ij, e^kj drawn at a length the smaller triangle can hold
        length = 0.6 * min(np.linalg.norm(points[i] - points[j]), np.linalg.norm(points[k] - points[j]))
        for end, label in ((i, "ij"), (k, "kj")):
            unit = (points[end] - points[j]) / np.linalg.norm(points[end] - points[j])
            ax.annotate("", xy=points[j] + length * unit, xytext=points[j],
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.0, shrinkA=0, shrinkB=0), zorder=4)
            if name == "t":
                ax.annotate(f"$e^{{{label}}}$", points[j] + length * unit, textcoords="offset points",
                            xytext=(4, -14 if end == i else 2), color=colour, fontsize=15)
        start = np.degrees(np.arctan2(*(points[i] - points[j])[::-1]))
        stop = np.degrees(np.arctan2(*(points[k] - points[j])[::-1]))
        low, high = sorted((start, stop))
        if high - low > 180:
            low, high = high, low + 360
        ax.add_patch(Arc(points[j], length, length, theta1=low, theta2=high, color=colour, lw=1.2))
    _finish_panel(ax, teacher, student,
                  "Angles $\\psi_A$ (eqs. 9-10)\nmatch $\\langle e^{ij}, e^{kj}\\rangle$ at each vertex",
                  f"$\\cos\\angle t_2 t_1 t_3 = {_cosine(teacher, i, j, k):.3f}$, "
                  f"$\\cos\\angle s_2 s_1 s_3 = {_cosine(student, i, j, k):.3f}$",
                  f"RKD-A loss $= {losses['rkd_a']:.3f}$")


def _finish_panel(ax, teacher: np.ndarray, student: np.ndarray, title: str, potentials: str, loss: str) -> None:
    """The points of both embeddings over the panel's lines, its title, and two lines of
    text: the potentials of one pair or triple, and the loss."""
    _scatter(ax, teacher, TEACHER_COLOUR, "o", "t")
    _scatter(ax, student, STUDENT_COLOUR, "s", "s")
    ax.set_title(title)
    ax.text(0.02, 0.10, potentials, transform=ax.transAxes, fontsize=13)
    ax.text(0.02, 0.02, loss, transform=ax.transAxes, fontsize=13)


def draw_relational_potentials(path: Path) -> Path:
    """Draw the three-panel figure to ``path`` (the suffix picks the format: .svg, .png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teacher, student = example_embeddings()
    losses = potentials(teacher, student)
    plt.rcParams.update({"font.size": 15, "svg.hashsalt": "rkd-book", "svg.fonttype": "path"})
    fig, axes = plt.subplots(1, 3, figsize=(14, 5.6), constrained_layout=True)
    for ax, panel in zip(axes, (_individual_panel, _distance_panel, _angle_panel)):
        panel(ax, teacher, student, losses)

    every = np.vstack([teacher, student])
    low, high = every.min(axis=0) - 0.7, every.max(axis=0) + 0.9
    for ax in axes:
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1] - 0.9, high[1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(
        handles=[plt.Line2D([], [], color=TEACHER_COLOUR, marker="o", ls="", label="teacher $t_i = f_T(x_i)$"),
                 plt.Line2D([], [], color=STUDENT_COLOUR, marker="s", ls="", label="student $s_i = f_S(x_i)$")],
        loc="upper right", fontsize=12, framealpha=0.9)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Date": None} if path.suffix == ".svg" else {}
    fig.savefig(path, metadata=metadata, dpi=150, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return path
