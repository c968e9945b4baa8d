"""The ``authors_code`` options of rkd.losses against transcriptions of the authors' code.

Each ``authors_*`` function below is our own transcription of a formula of the public
code the paper's numbers came from (``lenscloth/RKD``: ``metric/loss.py``,
``metric/pairsampler.py``, ``metric/utils.py``; RRD: ``giakoumoglou/distillers``,
``cifar/distillers/RRD.py``), written step by step the way that code computes it, so
that each option of ``rkd`` is checked against the computation it claims to reproduce:
values, gradients and, for the sampler, the very indices it draws.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rkd.distill import Distiller
from rkd.losses import (DarkRankLoss, DistanceWeightedSampler, FitNetLoss, RRDLoss, TripletLoss, triplet_loss)
from rkd.losses.terms import TermContext
from rkd.methods import Method, Stage


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- transcriptions


def ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root the authors' GPUs computed. On the CPU
    ``torch.sqrt`` goes through MKL's vector square root, which is not correctly rounded
    (see rkd.portable), so take it in float64 and round once."""
    return x.double().sqrt().to(x.dtype)  # portable-numerics: ok (test transcription)


def authors_pdist(e: torch.Tensor, squared: bool) -> torch.Tensor:
    """metric/utils.py ``pdist``: Gram form, clamped at 1e-12, optional sqrt, zero diagonal."""
    norms = e.pow(2).sum(dim=1)
    out = (norms.unsqueeze(1) + norms.unsqueeze(0) - 2 * e @ e.t()).clamp(min=1e-12)
    if not squared:
        out = ieee_sqrt(out)
    out = out.clone()
    out[range(len(e)), range(len(e))] = 0
    return out


def authors_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pairsampler.py ``pos_neg_mask``: same / different label, the diagonal excluded (uint8)."""
    not_self = 1 - torch.eye(labels.size(0), dtype=torch.uint8)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    return same * not_self, ~same * not_self


def authors_distance_weights(embeddings: torch.Tensor, labels: torch.Tensor, cut_off=0.5, nonzero_loss_cutoff=1.4):
    """pairsampler.py ``DistanceWeighted`` (master): its per-anchor weight matrix, before the draw."""
    embeddings = F.normalize(embeddings, dim=1, p=2)
    _, neg_mask = authors_masks(labels)
    d = embeddings.size(1)
    dist = ieee_sqrt(authors_pdist(embeddings, squared=True) + torch.eye(embeddings.size(0), dtype=torch.float32))
    dist = dist.clamp(min=cut_off)
    log_weight = (2.0 - d) * dist.log() - ((d - 3.0) / 2.0) * (1.0 - 0.25 * (dist * dist)).log()
    weight = (log_weight - log_weight.max(dim=1, keepdim=True)[0]).exp()
    weight = weight * (neg_mask * (dist < nonzero_loss_cutoff)).float()
    weight = weight + ((weight.sum(dim=1, keepdim=True) == 0) * neg_mask).float()
    return weight / weight.sum(dim=1, keepdim=True)


def authors_distance_weighted_draw(embeddings, labels):
    """``DistanceWeighted.forward``: every ordered positive pair, one negative drawn from
    the global RNG."""
    pos_mask, _ = authors_masks(labels)
    anchor_idx, pos_idx = pos_mask.nonzero()[:, 0], pos_mask.nonzero()[:, 1]
    weight = authors_distance_weights(embeddings, labels)[anchor_idx]
    return anchor_idx, pos_idx, torch.multinomial(weight, 1).squeeze(1)


def authors_l2_triplet(embeddings, labels, margin=0.2):
    """loss.py ``L2Triplet`` with the ``DistanceWeighted`` sampler: ``F.triplet_margin_loss(p=2)``, mean."""
    a, p, n = authors_distance_weighted_draw(embeddings, labels)
    return F.triplet_margin_loss(embeddings[a], embeddings[p], embeddings[n], margin=margin, p=2,
                                 reduction="none").mean()


def authors_hard_dark_rank(student, teacher, alpha=3.0, beta=3.0, permute_len=4):
    """loss.py ``HardDarkRank``: the teacher's top-k by sorting (self first, skipped), the
    student's Plackett-Luce terms normalised over the rest of that list only."""
    score_teacher = -1 * alpha * authors_pdist(teacher, squared=False).pow(beta)
    score_student = -1 * alpha * authors_pdist(student, squared=False).pow(beta)
    permute_idx = score_teacher.sort(dim=1, descending=True)[1][:, 1:(permute_len + 1)]
    ordered = torch.gather(score_student, 1, permute_idx)
    normalisers = torch.stack([torch.logsumexp(ordered[:, i:], dim=1) for i in range(permute_idx.size(1))], dim=1)
    return (-1 * (ordered - normalisers).sum(dim=1)).mean()


def all_remaining_dark_rank(student, teacher, alpha=3.0, beta=3.0, k=4):
    """The same top-k list, each Plackett-Luce term normalised over every point of the batch
    not yet placed (self excluded), one masked log-sum-exp per step."""
    n = student.shape[0]
    score_teacher = -alpha * torch.cdist(teacher, teacher).pow(beta)
    score_student = -alpha * torch.cdist(student, student).pow(beta)
    self_mask = torch.eye(n, dtype=torch.bool)
    order = score_teacher.masked_fill(self_mask, -float("inf")).topk(k, dim=1).indices
    removed = self_mask.clone()
    total = 0.0
    for j in range(k):
        chosen = order[:, j:j + 1]
        total = total + score_student.gather(1, chosen).squeeze(1) - torch.logsumexp(
            score_student.masked_fill(removed, -float("inf")), dim=1)
        removed = removed.scatter(1, chosen, True)
    return -total.mean()


class AuthorsFitNet(nn.Module):
    """loss.py ``FitNet``: a bias-free 1x1 convolution, U(-0.005, 0.005), mean squared error;
    [N, D] inputs are viewed as [N, D, 1, 1]."""

    def __init__(self, in_feature, out_feature):
        super().__init__()
        self.transform = nn.Conv2d(in_feature, out_feature, 1, bias=False)
        self.transform.weight.data.uniform_(-0.005, 0.005)

    def forward(self, student, teacher):
        if student.dim() == 2:
            student = student.unsqueeze(2).unsqueeze(3)
            teacher = teacher.unsqueeze(2).unsqueeze(3)
        return (self.transform(student) - teacher).pow(2).mean()


def authors_rrd_fifo_later(loss: RRDLoss, f_s, f_t, tau_s, tau_t):
    """cifar/distillers/RRD.py ``RRD_FifoMemory_Loss.forward`` on a copy of ``loss``'s state:
    project, normalise, enqueue the teacher keys FIRST, then the cross-entropy of the
    student's queue distribution against the teacher's. Returns (loss, queue after)."""
    queue, ptr = loss.queue.clone(), int(loss.queue_ptr)
    z_s = F.normalize(loss.embed_s(f_s), dim=1)
    z_t = F.normalize(loss.embed_t(f_t), dim=1)
    queue[ptr:ptr + z_t.shape[0]] = z_t.detach()
    out_s = torch.einsum("nc,kc->nk", [z_s, queue.clone().detach()])
    out_t = torch.einsum("nc,kc->nk", [z_t, queue.clone().detach()])
    value = -torch.sum(F.softmax(out_t.detach() / tau_t, dim=1) * F.log_softmax(out_s / tau_s, dim=1), dim=1).mean()
    return value, queue


# ---------------------------------------------------------------- triplet distance (item 2)


def test_plain_distance_triplet_matches_the_authors_triplet_margin_loss():
    a, p, n = (torch.randn(9, 5, generator=gen(i), dtype=torch.float64) for i in range(3))
    a = a.requires_grad_(True)
    ours = triplet_loss(a, p, n, 0.2, squared=False)
    theirs = F.triplet_margin_loss(a, p, n, margin=0.2, p=2, reduction="none").mean()
    torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=0)
    (grad_ours,) = torch.autograd.grad(ours, a)
    (grad_theirs,) = torch.autograd.grad(theirs, a)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-13, atol=1e-15)
    assert torch.autograd.gradcheck(lambda z: triplet_loss(z, p, n, 5.0, squared=False), (a,))
    # and it is a different loss from eq. 12 on the same triplets
    assert abs(float(ours.detach()) - float(triplet_loss(a, p, n, 0.2).detach())) > 0.1


def test_triplet_forms_differ_on_unit_vectors():
    a, p, n = (F.normalize(torch.randn(20000, 64, generator=gen(i)), dim=1) for i in range(3))
    squared, plain = float(triplet_loss(a, p, n, 0.2)), float(triplet_loss(a, p, n, 0.2, squared=False))
    assert squared == pytest.approx(0.262, abs=0.01) and plain == pytest.approx(0.203, abs=0.01)


def test_triplet_module_with_the_authors_options_reproduces_their_pipeline():
    labels = torch.arange(6).repeat_interleave(4)
    x = torch.randn(24, 16, generator=gen(7)) * 2.0  # unnormalised: the authors' sampler normalises, the loss does not
    ours = TripletLoss(0.2, DistanceWeightedSampler(authors_numerics=True), squared=False)
    torch.manual_seed(3)
    expected = authors_l2_triplet(x, labels)
    torch.manual_seed(3)
    torch.testing.assert_close(ours(x, labels), expected, rtol=0, atol=0)
    assert TripletLoss().squared is True  # eq. 12 stays the default


# ---------------------------------------------------------------- distance-weighted sampling (item 3)


def trained_like_batch(dim: int, seed: int = 0):
    """128 = 25 classes x 5 + 3 L2-normalised embeddings that look trained: each class a
    tight blob (mean intra-class distance ~0.57) around class centres that share a common
    direction (mean inter-class distance ~1.3, most below the 1.4 cut-off)."""
    g = gen(seed)
    centres = F.normalize(0.5 * torch.randn(1, dim, generator=g) + torch.randn(26, dim, generator=g), dim=1)
    labels = torch.arange(26).repeat_interleave(5)[:128]
    x = F.normalize(centres[labels] + 0.5 * torch.randn(128, dim, generator=g) / dim**0.5, dim=1)
    return x, labels


def uniform_rows(weights: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    negative = (labels.unsqueeze(0) != labels.unsqueeze(1)).to(weights.dtype)
    return torch.isclose(weights, negative / negative.sum(1, keepdim=True), rtol=1e-5, atol=0).all(dim=1)


@pytest.mark.parametrize("dim", [16, 128, 512])
def test_authors_numerics_match_the_transcribed_sampler_weights_and_draws(dim):
    x, labels = trained_like_batch(dim, seed=1)
    x = x * 3.0  # their sampler L2-normalises its input first
    sampler = DistanceWeightedSampler(authors_numerics=True)
    torch.testing.assert_close(sampler.negative_weights(x, labels), authors_distance_weights(x, labels),
                               rtol=0, atol=0)
    torch.manual_seed(11)
    expected = authors_distance_weighted_draw(x, labels)
    torch.manual_seed(11)
    for ours, theirs in zip(sampler(x, labels), expected):
        assert torch.equal(ours, theirs)


def test_authors_numerics_underflow_to_uniform_negatives_at_512_only():
    for dim in (32, 64, 128, 512):
        x, labels = trained_like_batch(dim)
        authors = uniform_rows(DistanceWeightedSampler(authors_numerics=True).negative_weights(x, labels), labels)
        wu = uniform_rows(DistanceWeightedSampler().negative_weights(x, labels), labels)
        assert not wu.any(), dim  # Wu et al.'s numerics never collapse here
        if dim == 512:
            assert authors.float().mean() >= 0.95  # in effect uniform negatives for (nearly) every anchor
        else:
            assert not authors.any(), dim  # the weights survive at D <= 128


def test_authors_numerics_normalise_and_wu_numerics_do_not():
    x, labels = trained_like_batch(32, seed=2)
    for authors_numerics, same in ((True, True), (False, False)):
        sampler = DistanceWeightedSampler(authors_numerics=authors_numerics)
        scaled = sampler.negative_weights(1.3 * x, labels)
        assert torch.allclose(scaled, sampler.negative_weights(x, labels), rtol=1e-5, atol=1e-7) == same
    assert DistanceWeightedSampler().authors_numerics is False  # Wu et al. stays the default


def test_authors_numerics_stay_finite_at_antipodal_points():
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [-1.0, 0.0], [-0.8, -0.6]])
    weights = DistanceWeightedSampler(authors_numerics=True).negative_weights(x, torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(4))


# ---------------------------------------------------------------- DarkRank (item 4)


def test_darkrank_default_is_the_authors_hard_dark_rank():
    s = torch.randn(12, 6, generator=gen(0), dtype=torch.float64, requires_grad=True)
    t = torch.randn(12, 9, generator=gen(1), dtype=torch.float64)
    ours = DarkRankLoss()(s, t)
    theirs = authors_hard_dark_rank(s, t)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
    (grad_ours,) = torch.autograd.grad(ours, s)
    (grad_theirs,) = torch.autograd.grad(theirs, s)
    torch.testing.assert_close(grad_ours, grad_theirs, rtol=1e-10, atol=1e-12)
    small_s = torch.randn(7, 3, generator=gen(2), dtype=torch.float64, requires_grad=True)
    small_t = torch.randn(7, 4, generator=gen(3), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: DarkRankLoss()(z, small_t), (small_s,))


def test_darkrank_normalisers_on_a_paper_sized_batch():
    """A batch of 128, student 64-d, teacher 512-d, unnormalised: the authors' top-k
    normaliser gives about a quarter of the all-remaining one (2,350 against 8,464 here;
    the audit found 8,643 and 2,258 on its input), so the paper's lambda = 1 and
    alpha = beta = 3 are tuned for the first only."""
    g = gen(0)
    s = torch.randn(128, 64, generator=g, dtype=torch.float64)
    t = torch.randn(128, 512, generator=g, dtype=torch.float64)
    top_k = DarkRankLoss()(s, t)
    all_remaining = DarkRankLoss(normalizer="all_remaining")(s, t)
    torch.testing.assert_close(top_k, authors_hard_dark_rank(s, t), rtol=1e-12, atol=0)
    torch.testing.assert_close(all_remaining, all_remaining_dark_rank(s, t), rtol=1e-12, atol=0)
    assert float(top_k) == pytest.approx(2350.2, abs=1.0)
    assert float(all_remaining) == pytest.approx(8464.3, abs=1.0)


# ---------------------------------------------------------------- FitNet regressors (item 5)


def test_fitnet_values_match_the_authors_module_on_vectors_and_maps():
    for spatial, shape_s, shape_t in ((False, (5, 6), (5, 4)), (True, (2, 3, 4, 4), (2, 5, 4, 4))):
        ours = FitNetLoss(shape_s[1], shape_t[1], spatial=spatial, learn_regressor=False).double()
        theirs = AuthorsFitNet(shape_s[1], shape_t[1]).double()
        theirs.transform.weight.data.copy_(ours.regressor.weight.data.view_as(theirs.transform.weight))
        s = torch.randn(*shape_s, generator=gen(0), dtype=torch.float64, requires_grad=True)
        t = torch.randn(*shape_t, generator=gen(1), dtype=torch.float64)
        value, value_theirs = ours(s, t), theirs(s, t)
        torch.testing.assert_close(value, value_theirs, rtol=1e-14, atol=0)
        torch.testing.assert_close(torch.autograd.grad(value, s)[0], torch.autograd.grad(value_theirs, s)[0])


def test_fixed_regressors_keep_their_random_init_and_never_reach_the_optimiser():
    fixed = FitNetLoss(6, 4, spatial=False, learn_regressor=False)
    assert not fixed.regressor.weight.requires_grad
    assert fixed.regressor.weight.abs().max() <= 0.005 and fixed.regressor.weight.std() > 1e-4
    assert "regressor.weight" in fixed.state_dict()
    assert FitNetLoss(6, 4, spatial=False).regressor.weight.requires_grad  # learned stays the default

    class Embedder(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.embedding_dim = dim
            self.linear = nn.Linear(3, dim)

        def forward(self, x):
            return {"embedding": self.linear(x)}

    # the hint stage as a run of its own, as the authors ran it: FitNet alone, fixed regressors
    method = Method("FitNet hint stage", (Stage("hint", {"fitnet": 1.0}),),
                    term_options={"fitnet": {"hints": ("embedding",), "learn_regressors": False}})
    student, teacher = Embedder(6), Embedder(4)
    distiller = Distiller(student, teacher, method, TermContext.from_models(student, teacher))
    regressor = distiller.terms["fitnet"].regressors["embedding"].regressor.weight
    # what rkd.train.fit hands the optimiser
    params = [p for p in distiller.trainable_parameters() if p.requires_grad]
    assert all(p is not regressor for p in params)
    optimizer = torch.optim.Adam(params, lr=0.1)
    before, student_before = regressor.detach().clone(), student.linear.weight.detach().clone()
    x = torch.randn(8, 3, generator=gen(0))
    sum(distiller(x, torch.zeros(8, dtype=torch.long)).values()).backward()
    optimizer.step()
    assert regressor.grad is None and torch.equal(regressor, before)
    assert not torch.equal(student.linear.weight, student_before)


# ---------------------------------------------------------------- RRD versions (item 6)


def test_rrd_later_form_matches_the_transcribed_fifo_loss():
    torch.manual_seed(0)
    ours = RRDLoss(student_dim=6, teacher_dim=10, feat_dim=4, queue_size=16, tau_s=0.1, tau_t=0.02,
                   enqueue_before_loss=True).double()
    student = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(8, 10, dtype=torch.float64)
    ours.queue_ptr.fill_(8)  # the second batch of an epoch
    expected, queue_after = authors_rrd_fifo_later(ours, student, teacher, tau_s=0.1, tau_t=0.02)
    (grad_expected,) = torch.autograd.grad(expected, student)
    value = ours(student, teacher)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(torch.autograd.grad(value, student)[0], grad_expected)
    torch.testing.assert_close(ours.queue, queue_after)
    assert int(ours.queue_ptr) == 0


def test_rrd_2024_form_is_the_default_and_differs_from_the_later_one():
    torch.manual_seed(1)
    default = RRDLoss(student_dim=5, teacher_dim=7, feat_dim=4, queue_size=12).double()
    assert (default.tau_s, default.tau_t, default.enqueue_before_loss) == (0.04, 0.10, False)
    later = RRDLoss(student_dim=5, teacher_dim=7, feat_dim=4, queue_size=12, enqueue_before_loss=True).double()
    later.load_state_dict(default.state_dict())
    s, t = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    with torch.no_grad():
        first, second = default(s, t), later(s, t)
    torch.testing.assert_close(default.queue, later.queue)  # the same keys end up queued
    assert abs(float(first) - float(second)) > 1e-3  # but the later form saw them while computing the loss
