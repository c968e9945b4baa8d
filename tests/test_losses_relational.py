"""RKD-D, RKD-A (eq. 5-10) and RRD against slow direct forms and the authors' vectorised form."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from rkd.losses import relational
from rkd.losses.pairwise import CLOSE_PAIR_THRESHOLD
from rkd.losses.reference import authors_rkd_angle, authors_rkd_distance
from rkd.losses.relational import RKDLoss, rkd_angle, rkd_distance
from rkd.losses.rrd import RRDLoss

# ---------------------------------------------------------------- reference forms


def huber(x: torch.Tensor) -> torch.Tensor:
    """Eq. 8 with delta 1, written out."""
    return 0.5 * x * x if abs(float(x.detach())) <= 1.0 else x.abs() - 0.5


def loop_rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 5-8 with one Python loop per pair (authors' reductions: clamp 1e-12, mean over N^2)."""
    n = student.shape[0]

    def potentials(x):
        d = [[None] * n for _ in range(n)]
        positive = []
        for i in range(n):
            for j in range(n):
                if i == j:
                    d[i][j] = x.new_zeros(())
                else:
                    d[i][j] = ((x[i] - x[j]).pow(2).sum().clamp_min(1e-12)).sqrt()
                    positive.append(d[i][j])
        mu = sum(positive) / len(positive)
        return [[d[i][j] / mu for j in range(n)] for i in range(n)]

    s, t = potentials(student), potentials(teacher.detach())
    return sum(huber(s[i][j] - t[i][j]) for i in range(n) for j in range(n)) / n**2


def loop_rkd_angle(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 9-10 with one Python loop per triple; the vertex is j; unit(0) = 0."""
    n = student.shape[0]

    def unit_vectors(x):
        e = [[None] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                diff = x[i] - x[j]
                norm = diff.norm()
                e[i][j] = diff / norm if float(norm.detach()) > 0 else torch.zeros_like(diff)
        return e

    es, et = unit_vectors(student), unit_vectors(teacher.detach())
    total = student.new_zeros(())
    for i in range(n):
        for j in range(n):
            for k in range(n):
                cos_s = torch.dot(es[i][j], es[k][j])
                cos_t = torch.dot(et[i][j], et[k][j])
                total = total + huber(cos_s - cos_t)
    return total / n**3


def value_and_grad(loss_fn, student, teacher):
    student = student.detach().clone().requires_grad_(True)
    loss = loss_fn(student, teacher)
    (grad,) = torch.autograd.grad(loss, student)
    return loss.detach(), grad


def random_orthogonal(dim: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))


LOSSES = [
    pytest.param(rkd_distance, loop_rkd_distance, authors_rkd_distance, id="distance"),
    pytest.param(rkd_angle, loop_rkd_angle, authors_rkd_angle, id="angle"),
]

# ---------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("ours, loop, _reference", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [5, 9, 12])
def test_matches_direct_loop(ours, loop, _reference, dtype, n):
    g = torch.Generator().manual_seed(n)
    student = torch.randn(n, 4, generator=g, dtype=dtype)
    teacher = torch.randn(n, 7, generator=g, dtype=dtype)
    value, grad = value_and_grad(ours, student, teacher)
    expected_value, expected_grad = value_and_grad(loop, student, teacher)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    assert value.dtype == dtype
    torch.testing.assert_close(value, expected_value, **tol)
    torch.testing.assert_close(grad, expected_grad, **tol)


@pytest.mark.parametrize("ours, _loop, reference", LOSSES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_authors_vectorised_form(ours, _loop, reference, dtype):
    g = torch.Generator().manual_seed(7)
    student = torch.randn(24, 8, generator=g, dtype=dtype)
    teacher = torch.randn(24, 32, generator=g, dtype=dtype) * 3.0 + 1.0
    value, grad = value_and_grad(ours, student, teacher)
    expected_value, expected_grad = value_and_grad(reference, student, teacher)
    tol = dict(rtol=2e-4, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-13)
    torch.testing.assert_close(value, expected_value, **tol)
    torch.testing.assert_close(grad, expected_grad, **tol)


def test_angle_chunking_does_not_change_the_result(monkeypatch):
    g = torch.Generator().manual_seed(3)
    student = torch.randn(11, 5, generator=g, dtype=torch.float64)
    teacher = torch.randn(11, 6, generator=g, dtype=torch.float64)
    whole = value_and_grad(rkd_angle, student, teacher)
    monkeypatch.setattr(relational, "ANGLE_CHUNK_ELEMENTS", 2 * 11 * 11)  # 2 vertices per chunk
    chunked = value_and_grad(rkd_angle, student, teacher)
    monkeypatch.setattr(relational, "ANGLE_CHUNK_ELEMENTS", 1)  # 1 vertex per chunk
    single = value_and_grad(rkd_angle, student, teacher)
    for other in (chunked, single):
        torch.testing.assert_close(other[0], whole[0], rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(other[1], whole[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
def test_gradcheck_float64(loss_fn):
    g = torch.Generator().manual_seed(11)
    student = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(6, 5, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s: loss_fn(s, teacher), (student,))


def test_gradcheck_angle_function_on_distance_entries():
    """The analytic backward against finite differences in each off-diagonal entry, the
    matrix taken as a free (not even symmetric) input."""
    g = torch.Generator().manual_seed(5)
    points = torch.randn(5, 3, generator=g, dtype=torch.float64)
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    squared = torch.cdist(points, points).pow(2) + 0.3 * off_diagonal  # all off-diagonal entries well above 0
    teacher_points = torch.randn(5, 4, generator=g, dtype=torch.float64)
    teacher_squared = torch.cdist(teacher_points, teacher_points).pow(2) * off_diagonal

    def loss_of_entries(entries):
        return relational._AngleLossFromSquaredDistances.apply(entries * off_diagonal, teacher_squared)

    assert torch.autograd.gradcheck(loss_of_entries, (squared.clone().requires_grad_(True),))


# ---------------------------------------------------------------- tight clusters in float32


def tight_clusters(n_clusters: int, per_cluster: int, dim: int, ratio: float, seed: int) -> torch.Tensor:
    """float32 points in clusters whose size is ``ratio`` times the distance between them."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_clusters, dim, generator=g, dtype=torch.float64), dim=1)
    noise = torch.randn(n_clusters * per_cluster, dim, generator=g, dtype=torch.float64) / dim**0.5
    return (centres.repeat_interleave(per_cluster, 0) + ratio * noise).float()


def relative_errors(loss_fn, student, teacher):
    """Loss and gradient of ``loss_fn`` on float32 inputs against the authors' form evaluated
    in float64 on the same (exactly converted) inputs."""
    value, grad = value_and_grad(loss_fn, student, teacher)
    reference, reference_grad = value_and_grad(authors_rkd_angle, student.double(), teacher.double())
    return (abs(float(value) - float(reference)) / abs(float(reference)),
            float((grad.double() - reference_grad).norm() / reference_grad.norm()))


@pytest.mark.parametrize("ratio", [1e-3, 1e-5])
def test_angle_float32_is_as_accurate_as_the_authors_on_tight_clusters(ratio):
    """Intra/inter-cluster distance ratio 1e-5: the law of cosines on rounded squared
    distances lost ~1e-4 of the loss and ~3e-3 of the gradient here; with exact hi parts
    and direct distances for close pairs it stays at the authors' float32 level (~1e-7)."""
    student = tight_clusters(8, 5, 16, ratio, seed=0)
    teacher = tight_clusters(8, 5, 32, ratio, seed=1)
    loss_error, grad_error = relative_errors(rkd_angle, student, teacher)
    authors_loss_error, authors_grad_error = relative_errors(authors_rkd_angle, student, teacher)
    assert authors_loss_error < 1e-6 and authors_grad_error < 1e-6  # the level to reach
    assert loss_error < 1e-6 and grad_error < 1e-6


def exact_squared_distances(x: torch.Tensor) -> torch.Tensor:
    return (x.double().unsqueeze(1) - x.double().unsqueeze(0)).pow(2).sum(2)


def test_close_pairs_get_direct_squared_distances():
    """The float64 Gram matrix (RKD-A's): exact distances, to float64 rounding, for pairs
    1e-5 apart among pairs 1 apart."""
    x = tight_clusters(3, 4, 64, 1e-5, seed=2)
    squared = relational.pairwise_squared_distances(x, torch.float64)
    torch.testing.assert_close(squared, exact_squared_distances(x), rtol=1e-12, atol=0)


def test_float32_distances_recompute_close_pairs_and_fall_back_to_float64_when_most_are_close():
    """Float32 (RKD-D's): the close pairs come from their difference vectors (relative
    error ~1e-7 whatever the distance), the rest from the Gram matrix within its bound;
    when more than a quarter of the pairs are close, the whole matrix is float64."""
    few_close = tight_clusters(16, 2, 64, 1e-4, seed=5)  # 16 of 496 pairs close
    squared = relational.pairwise_squared_distances(few_close)
    assert squared.dtype == torch.float32
    exact = exact_squared_distances(few_close)
    torch.testing.assert_close(squared.double(), exact, rtol=2e-6, atol=0)  # the close pairs included
    many_close = tight_clusters(3, 4, 64, 1e-5, seed=2)  # 18 of 66 pairs close
    squared = relational.pairwise_squared_distances(many_close)
    assert squared.dtype == torch.float64
    torch.testing.assert_close(squared, exact_squared_distances(many_close), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pairwise_squared_distances_gradcheck_with_close_and_coincident_pairs(dtype):
    """The hand-written backward (one matrix product, close pairs from their differences,
    coincident pairs passing nothing) against finite differences, through a weighted sum."""
    x = tight_clusters(4, 3, 5, 1e-3, seed=6).double()
    x[11] = x[10]  # a duplicate row: its pair is coincident
    weights = torch.rand(12, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    def weighted(rows):
        return (relational.pairwise_squared_distances(rows, dtype).double() * weights).sum()

    if dtype == torch.float64:
        assert torch.autograd.gradcheck(weighted, (x.clone().requires_grad_(True),), eps=1e-7)
        return
    # float32: the analytic gradient of the float32 computation against the float64 one
    rows32 = x.float().requires_grad_(True)
    (grad32,) = torch.autograd.grad(weighted(rows32), rows32)
    rows64 = x.float().double().requires_grad_(True)
    (grad64,) = torch.autograd.grad(weighted(rows64), rows64)
    torch.testing.assert_close(grad32.double(), grad64, rtol=1e-5, atol=1e-6)
    assert grad32[10].abs().max() < 100 and torch.isfinite(grad32).all()


def float64_reference_errors(loss_fn, student, teacher, reference_fn=authors_rkd_distance):
    """Relative errors of the loss and of the gradient (norm) of ``loss_fn`` on float32
    inputs against ``reference_fn`` in float64 on the same (exactly converted) inputs."""
    value, grad = value_and_grad(loss_fn, student, teacher)
    reference, reference_grad = value_and_grad(reference_fn, student.double(), teacher.double())
    return (abs(float(value) - float(reference)) / abs(float(reference)),
            float((grad.double() - reference_grad).norm() / reference_grad.norm()))


def distance_inputs(kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "normalised":  # the benchmark's inputs
        return (F.normalize(torch.randn(64, 512, generator=g), dim=1),
                F.normalize(torch.randn(64, 128, generator=g), dim=1))
    if kind == "offset":  # post-ReLU-like features: a large common offset, small spread
        return 50.0 + torch.randn(64, 256, generator=g), 50.0 + torch.randn(64, 96, generator=g)
    # classes of 4 tight rows: a quarter of the pairs at 1e-2 of the others' distance
    return tight_clusters(16, 4, 128, 1e-2, seed=seed), tight_clusters(16, 4, 64, 3e-2, seed=seed + 1)


@pytest.mark.parametrize("kind", ["normalised", "offset", "clusters"])
def test_distance_float32_against_a_float64_reference(kind):
    """RKD-D computes in float32. Stated tolerance against the authors' form in float64:
    2e-6 relative on the loss and 2e-5 on the gradient (its norm; measured: at most
    1.2e-7 and 2.5e-6); never worse than 2x the authors' own float32 error plus float32
    resolution (their uncentred Gram matrix loses most digits on the offset batch:
    3e-4 and 2e-3)."""
    student, teacher = distance_inputs(kind)
    loss_error, grad_error = float64_reference_errors(rkd_distance, student, teacher)
    authors_loss_error, authors_grad_error = float64_reference_errors(authors_rkd_distance, student, teacher)
    assert loss_error < 2e-6 and grad_error < 2e-5
    assert loss_error < 2 * authors_loss_error + 1e-6 and grad_error < 2 * authors_grad_error + 1e-5


def test_direct_squared_distances_gradcheck():
    """Through rkd_distance on a float64 batch with tight pairs, so the recomputed entries
    carry gradient."""
    x = tight_clusters(3, 3, 4, 1e-4, seed=3).double().requires_grad_(True)
    teacher = torch.randn(9, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    squared = relational.pairwise_squared_distances(x.detach())
    norms = (x.detach() - x.detach().mean(0)).pow(2).sum(1)
    assert (squared < CLOSE_PAIR_THRESHOLD[torch.float64] * (norms[:, None] + norms[None, :])).sum() > 9
    assert torch.autograd.gradcheck(lambda s: rkd_distance(s, teacher), (x,))
    # angles change on the scale of the 1e-4 clusters: finite differences need a step well below it
    assert torch.autograd.gradcheck(lambda s: rkd_angle(s, teacher), (x,), eps=1e-8)


# ---------------------------------------------------------------- invariances


def transformed(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A rotated, scaled and translated copy of x."""
    rotation = random_orthogonal(x.shape[1], generator, x.dtype)
    shift = torch.randn(1, x.shape[1], generator=generator, dtype=x.dtype)
    return 2.7 * x @ rotation + 5.0 * shift


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
@pytest.mark.parametrize("part", ["rotation", "translation", "scaling", "all"])
def test_invariant_to_rotation_translation_scaling(loss_fn, part):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 6, dtype=torch.float64, generator=g)
    y = torch.randn(12, 9, dtype=torch.float64, generator=g)
    transforms = {
        "rotation": lambda z: z @ random_orthogonal(z.shape[1], g),
        "translation": lambda z: z + 4.0 * torch.randn(1, z.shape[1], generator=g, dtype=z.dtype),
        "scaling": lambda z: 0.01 * z,
        "all": lambda z: transformed(z, g),
    }
    change = transforms[part]
    # the potentials of a transformed copy equal the original's: the loss vanishes
    assert float(loss_fn(x, change(x))) < 1e-20
    assert float(loss_fn(change(x), x)) < 1e-20
    # and transforming either side leaves the loss unchanged
    base = loss_fn(x, y)
    assert float(base) > 1e-3  # not trivially zero
    torch.testing.assert_close(loss_fn(x, change(y)), base, rtol=1e-10, atol=0)
    torch.testing.assert_close(loss_fn(change(x), y), base, rtol=1e-10, atol=0)


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
def test_invariant_in_float32_too(loss_fn):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(16, 8, generator=g)
    y = torch.randn(16, 32, generator=g)
    moved = transformed(y.double(), g).float()
    torch.testing.assert_close(loss_fn(x, moved), loss_fn(x, y), rtol=1e-4, atol=1e-7)
    assert float(loss_fn(x, transformed(x.double(), g).float())) < 1e-9


# ---------------------------------------------------------------- degenerate inputs


def batch_with_duplicates(dtype=torch.float32):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(8, 5, generator=g, dtype=dtype)
    x[3] = x[1]
    x[6] = x[1]
    x[7] = x[2]
    return x


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_duplicate_rows_give_finite_bounded_gradients(loss_fn, dtype):
    student = batch_with_duplicates(dtype)
    teacher = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=dtype)
    teacher[5] = teacher[0]
    value, grad = value_and_grad(loss_fn, student, teacher)
    assert torch.isfinite(value)
    assert torch.isfinite(grad).all()
    assert grad.abs().max() < 10.0


def test_angle_duplicate_rows_match_loop_and_authors_values_but_not_their_gradients():
    student = batch_with_duplicates(torch.float64)
    teacher = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    value, grad = value_and_grad(rkd_angle, student, teacher)
    loop_value, loop_grad = value_and_grad(loop_rkd_angle, student, teacher)
    torch.testing.assert_close(value, loop_value, rtol=1e-10, atol=1e-14)
    # the loop's unit(0) = 0 branch passes no gradient either
    torch.testing.assert_close(grad, loop_grad, rtol=1e-9, atol=1e-12)
    authors_value, authors_grad = value_and_grad(authors_rkd_angle, student, teacher)
    torch.testing.assert_close(value, authors_value, rtol=1e-10, atol=1e-14)
    assert authors_grad.abs().max() > 1e6  # F.normalize of a zero difference


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
def test_all_identical_batch_is_finite(loss_fn):
    student = torch.ones(6, 4)
    teacher = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    value, grad = value_and_grad(loss_fn, student, teacher)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert grad.abs().max() < 10.0
    value, grad = value_and_grad(loss_fn, teacher, torch.zeros(6, 2))
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_distance_duplicates_are_clamped_like_the_authors():
    """A duplicate pair has distance sqrt(1e-12), which counts in the mean like any other."""
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    potentials = relational._normalized_distances(x)
    mu = (2 * 1e-6 + 4 * 5.0) / 6
    expected = torch.tensor([[0, 1e-6, 5], [1e-6, 0, 5], [5, 5, 0]], dtype=torch.float64) / mu
    torch.testing.assert_close(potentials, expected)


def test_diagonal_is_exactly_zero():
    x = torch.randn(10, 300, generator=torch.Generator().manual_seed(0)) * 100 + 1000
    squared = relational.pairwise_squared_distances(x)
    assert (torch.diagonal(squared) == 0).all()
    assert (relational._normalized_distances(x).diagonal() == 0).all()


@pytest.mark.parametrize("loss_fn, minimum", [(rkd_distance, 2), (rkd_angle, 3)])
def test_too_small_batch_names_the_minimum(loss_fn, minimum):
    x = torch.randn(minimum - 1, 4)
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        loss_fn(x, x)
    loss_fn(torch.randn(minimum, 4), torch.randn(minimum, 2))  # the minimum itself works


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
def test_bad_shapes_raise(loss_fn):
    with pytest.raises(ValueError, match="2-D"):
        loss_fn(torch.randn(4, 3, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="same N"):
        loss_fn(torch.randn(4, 3), torch.randn(5, 3))


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
def test_teacher_gets_no_gradient(loss_fn):
    student = torch.randn(7, 3, requires_grad=True)
    teacher = torch.randn(7, 5, requires_grad=True)
    loss_fn(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


class _LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize("loss_fn", [rkd_distance, rkd_angle])
def test_no_n_by_n_by_d_tensor(loss_fn):
    n, d = 24, 512
    student = torch.randn(n, d, requires_grad=True)
    teacher = torch.randn(n, d)
    with _LargestTensor() as probe:
        loss_fn(student, teacher).backward()
    # RKD-A's largest: the student's and the teacher's cosines of a chunk of vertices, stacked
    assert probe.largest <= max(n * d, 2 * n**3)
    assert probe.largest < n * n * d // 8


def test_rkd_loss_combines_with_lambdas():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(8, 4, generator=g), torch.randn(8, 6, generator=g)
    expected = 25.0 * rkd_distance(s, t) + 50.0 * rkd_angle(s, t)
    torch.testing.assert_close(RKDLoss(lambda_d=25.0, lambda_a=50.0)(s, t), expected)
    torch.testing.assert_close(RKDLoss(lambda_d=0.0, lambda_a=2.0)(s, t), 2.0 * rkd_angle(s, t))


# ---------------------------------------------------------------- RRD


def loop_rrd(loss: RRDLoss, student, teacher):
    """Cross-entropy of the student's queue distribution against the teacher's, one row at a time."""
    total = 0.0
    queue = loss.queue
    for s_row, t_row in zip(student, teacher):
        zs = F.normalize(loss.embed_s(s_row), dim=0)
        zt = F.normalize(loss.embed_t(t_row), dim=0)
        p_t = torch.softmax(queue @ zt / loss.tau_t, dim=0)
        log_p_s = torch.log_softmax(queue @ zs / loss.tau_s, dim=0)
        total = total - (p_t * log_p_s).sum()
    return total / student.shape[0]


def test_rrd_matches_loop_and_enqueues_after_the_loss():
    torch.manual_seed(0)
    loss = RRDLoss(student_dim=6, teacher_dim=10, feat_dim=4, queue_size=16).double()
    student = torch.randn(5, 6, dtype=torch.float64)
    teacher = torch.randn(5, 10, dtype=torch.float64)
    expected = loop_rrd(loss, student, teacher)
    queue_before = loss.queue.clone()
    value = loss(student, teacher)
    torch.testing.assert_close(value, expected)
    # the batch went into rows 0..4 only after the loss used the old queue
    keys = F.normalize(loss.embed_t(teacher), dim=1).detach()
    torch.testing.assert_close(loss.queue[:5], keys)
    torch.testing.assert_close(loss.queue[5:], queue_before[5:])
    assert int(loss.queue_ptr) == 5


def test_rrd_equal_temperatures_and_projections_give_teacher_entropy():
    torch.manual_seed(1)
    loss = RRDLoss(student_dim=8, teacher_dim=8, feat_dim=5, queue_size=32, tau_s=0.1, tau_t=0.1).double()
    loss.embed_s.load_state_dict(loss.embed_t.state_dict())
    loss.eval()
    x = torch.randn(6, 8, dtype=torch.float64)
    with torch.no_grad():
        keys = F.normalize(loss.embed_t(x), dim=1)
        p_t = torch.softmax(keys @ loss.queue.T / 0.1, dim=1)
        entropy = -(p_t * p_t.log()).sum(dim=1).mean()
    torch.testing.assert_close(loss(x, x), entropy)


def test_rrd_queue_wraps_for_odd_batch_sizes():
    torch.manual_seed(2)
    loss = RRDLoss(student_dim=3, teacher_dim=3, feat_dim=2, queue_size=7)
    written = []
    for batch in (3, 5, 2, 4, 9):
        s, t = torch.randn(batch, 3), torch.randn(batch, 3)
        loss(s, t)
        written.extend(F.normalize(loss.embed_t(t), dim=1).detach())
    total = sum((3, 5, 2, 4, 9))
    assert int(loss.queue_ptr) == total % 7
    # row r holds the newest key written at a position congruent to r mod 7
    expected = torch.empty(7, 2)
    for position, key in enumerate(written):
        expected[position % 7] = key
    torch.testing.assert_close(loss.queue, expected)


def test_rrd_eval_mode_does_not_enqueue_and_state_dict_has_queue():
    torch.manual_seed(3)
    loss = RRDLoss(student_dim=3, teacher_dim=4, feat_dim=2, queue_size=5).eval()
    before = loss.queue.clone()
    loss(torch.randn(4, 3), torch.randn(4, 4))
    assert torch.equal(loss.queue, before) and int(loss.queue_ptr) == 0
    state = loss.state_dict()
    assert "queue" in state and "queue_ptr" in state
    torch.testing.assert_close(state["queue"].norm(dim=1), torch.ones(5))


def test_rrd_queue_init_follows_the_global_seed():
    torch.manual_seed(4)
    a = RRDLoss(3, 4, feat_dim=2, queue_size=5).queue
    torch.manual_seed(4)
    b = RRDLoss(3, 4, feat_dim=2, queue_size=5).queue
    assert torch.equal(a, b)


def test_rrd_gradcheck_and_teacher_detached():
    torch.manual_seed(5)
    loss = RRDLoss(student_dim=3, teacher_dim=4, feat_dim=2, queue_size=6).double().eval()
    student = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: loss(s, teacher), (student,))
    loss(student, teacher).backward()
    assert teacher.grad is None and loss.embed_t.weight.grad is None
    assert loss.embed_s.weight.grad is not None
