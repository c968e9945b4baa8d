"""HKD, FitNet, attention, triplet + distance-weighted sampling, DarkRank, prototypical."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rkd.losses import (DarkRankLoss, DistanceWeightedSampler, FitNetLoss, TripletLoss, attention_loss,
                        attention_map, hkd, prototypical_logits, prototypical_loss, split_episode,
                        triplet_loss)


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- HKD (eq. 2)


def loop_hkd(s, t, tau):
    total = 0.0
    for s_row, t_row in zip(s, t.detach()):
        p_t = [math.exp(v / tau) for v in t_row.tolist()]
        z_t = sum(p_t)
        p_t = [v / z_t for v in p_t]
        log_z_s = torch.logsumexp(s_row / tau, dim=0)
        for c, p in enumerate(p_t):
            total = total + p * (math.log(p) - (s_row[c] / tau - log_z_s))
    return tau**2 * total / s.shape[0]


def test_hkd_matches_loop_with_tau_squared():
    s = torch.randn(5, 7, generator=gen(0), dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 7, generator=gen(1), dtype=torch.float64)
    value = hkd(s, t, temperature=4.0)
    torch.testing.assert_close(value, loop_hkd(s, t, 4.0))
    # the authors' 16 * batch-mean KL at tau 4 is the same number
    authors = 16 * F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="none").sum(1).mean()
    torch.testing.assert_close(value, authors)
    assert torch.autograd.gradcheck(lambda x: hkd(x, t, 2.0), (s,))
    assert float(hkd(t, t)) < 1e-12


def test_hkd_rejects_bad_input_and_detaches_teacher():
    with pytest.raises(ValueError, match="same"):
        hkd(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="temperature"):
        hkd(torch.randn(3, 4), torch.randn(3, 4), temperature=0)
    t = torch.randn(3, 4, requires_grad=True)
    hkd(torch.randn(3, 4, requires_grad=True), t).backward()
    assert t.grad is None


# ---------------------------------------------------------------- FitNet (eq. 3)


def test_fitnet_on_maps_matches_direct_form():
    loss = FitNetLoss(3, 5).double()
    s = torch.randn(2, 3, 4, 4, generator=gen(0), dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, generator=gen(1), dtype=torch.float64)
    w = loss.regressor.weight[:, :, 0, 0]  # [5, 3]
    expected = sum(((w @ s[n, :, i, j] - t[n, :, i, j]) ** 2).sum()
                   for n in range(2) for i in range(4) for j in range(4)) / t.numel()
    torch.testing.assert_close(loss(s, t), expected)
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (s,))
    assert loss.regressor.bias is None and loss.regressor.weight.abs().max() <= 0.005


def test_fitnet_spatial_mismatch_and_vectors():
    loss = FitNetLoss(3, 5).double()
    s = torch.randn(2, 3, 8, 8, generator=gen(0), dtype=torch.float64)
    t = torch.randn(2, 5, 4, 4, generator=gen(1), dtype=torch.float64)
    pooled = F.adaptive_avg_pool2d(s, (4, 4))
    torch.testing.assert_close(loss(s, t), loss(pooled, t))
    vector = FitNetLoss(6, 4, spatial=False)
    s, t = torch.randn(3, 6), torch.randn(3, 4)
    torch.testing.assert_close(vector(s, t), ((s @ vector.regressor.weight.T - t) ** 2).mean())
    with pytest.raises(ValueError, match="6 -> 4"):
        vector(torch.randn(3, 5), t)
    with pytest.raises(ValueError, match="feature maps"):
        loss(torch.randn(2, 3), torch.randn(2, 5))
    params = dict(FitNetLoss(3, 5).named_parameters())
    assert list(params) == ["regressor.weight"] and params["regressor.weight"].requires_grad


# ---------------------------------------------------------------- attention transfer


def loop_attention_map(f):
    n, c, h, w = f.shape
    maps = torch.zeros(n, h * w, dtype=f.dtype)
    for i in range(n):
        values = [sum(float(f[i, k, y, x]) ** 2 for k in range(c)) / c for y in range(h) for x in range(w)]
        norm = math.sqrt(sum(v * v for v in values))
        maps[i] = torch.tensor([v / norm for v in values], dtype=f.dtype)
    return maps


def test_attention_map_and_loss_match_loops():
    s = [torch.randn(2, 3, 4, 4, generator=gen(i), dtype=torch.float64) for i in range(2)]
    t = [torch.randn(2, 5, 4, 4, generator=gen(10 + i), dtype=torch.float64) for i in range(2)]
    torch.testing.assert_close(attention_map(s[0]), loop_attention_map(s[0]))
    expected = sum(((loop_attention_map(a) - loop_attention_map(b)) ** 2).mean() for a, b in zip(s, t))
    torch.testing.assert_close(attention_loss(s, t), expected)  # summed over blocks
    x = s[0].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: attention_loss([z], [t[0]]), (x,))


def test_attention_spatial_mismatch_pools_to_smaller():
    s = torch.randn(2, 3, 8, 8, generator=gen(0), dtype=torch.float64)
    t = torch.randn(2, 4, 4, 4, generator=gen(1), dtype=torch.float64)
    energy = F.adaptive_avg_pool2d(s.pow(2).mean(1, keepdim=True), (4, 4))
    expected = ((F.normalize(energy.flatten(1), dim=1) - attention_map(t)) ** 2).mean()
    torch.testing.assert_close(attention_loss([s], [t]), expected)
    torch.testing.assert_close(attention_loss([t], [s]), expected)
    with pytest.raises(ValueError, match="same non-zero number"):
        attention_loss([s], [])
    with pytest.raises(ValueError, match="1x1 map"):  # e.g. conv4's last block on 28x28 images
        attention_loss([s, torch.randn(2, 3, 1, 1)], [t, torch.randn(2, 4, 2, 2)])


# ---------------------------------------------------------------- triplet (eq. 12)


def test_triplet_functional_matches_loop():
    a, p, n = (torch.randn(6, 4, generator=gen(i), dtype=torch.float64) for i in range(3))
    expected = sum(max(0.0, float(((a[i] - p[i]) ** 2).sum() - ((a[i] - n[i]) ** 2).sum()) + 0.2)
                   for i in range(6)) / 6
    assert abs(float(triplet_loss(a, p, n, 0.2)) - expected) < 1e-12
    x = a.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: triplet_loss(z, p, n, 5.0), (x,))


def loop_negative_weights(x, labels, cutoff, nonzero_cutoff):
    n, dim = x.shape
    weights = torch.zeros(n, n, dtype=torch.float64)
    for a in range(n):
        for j in range(n):
            if labels[a] == labels[j]:
                continue
            d = max(float((x[a] - x[j]).norm()), cutoff)
            if d >= nonzero_cutoff:
                continue
            weights[a, j] = 1.0 / (d ** (dim - 2) * (1 - d * d / 4) ** ((dim - 3) / 2))
        if weights[a].sum() == 0:
            weights[a] = (labels != labels[a]).double()
        weights[a] /= weights[a].sum()
    return weights


def embedded_batch(seed=0, n_classes=4, per_class=3, dim=8):
    x = F.normalize(torch.randn(n_classes * per_class, dim, generator=gen(seed), dtype=torch.float64), dim=1)
    return x, torch.arange(n_classes).repeat_interleave(per_class)


def test_distance_weighted_probabilities_match_the_density_formula():
    x, labels = embedded_batch()
    sampler = DistanceWeightedSampler(cutoff=0.5, nonzero_loss_cutoff=1.4)
    weights = sampler.negative_weights(x, labels)
    torch.testing.assert_close(weights, loop_negative_weights(x, labels, 0.5, 1.4))
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    assert (weights[same] == 0).all()


def test_distance_weighted_fallback_is_uniform_over_negatives():
    x, labels = embedded_batch(seed=1)
    weights = DistanceWeightedSampler(cutoff=0.5, nonzero_loss_cutoff=0.01).negative_weights(x, labels)
    expected = (labels.unsqueeze(0) != labels.unsqueeze(1)).double()
    torch.testing.assert_close(weights, expected / expected.sum(1, keepdim=True))


def test_sampler_is_deterministic_with_a_generator_and_valid():
    x, labels = embedded_batch(seed=2, dim=16)
    first = DistanceWeightedSampler(generator=gen(5))(x, labels)
    second = DistanceWeightedSampler(generator=gen(5))(x, labels)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    anchor, positive, negative = first
    assert anchor.numel() == 4 * 3 * 2  # every ordered positive pair
    assert (labels[anchor] == labels[positive]).all() and (anchor != positive).all()
    assert (labels[anchor] != labels[negative]).all()


def test_sampler_frequencies_follow_the_weights():
    x, labels = embedded_batch(seed=3, n_classes=3, per_class=2, dim=4)
    sampler = DistanceWeightedSampler(generator=gen(0))
    weights = sampler.negative_weights(x, labels)
    counts = torch.zeros_like(weights)
    for _ in range(400):
        anchor, _, negative = sampler(x, labels)
        counts.index_put_((anchor, negative), torch.ones(anchor.shape[0], dtype=counts.dtype), accumulate=True)
    frequencies = counts / counts.sum(1, keepdim=True)
    assert (frequencies - weights).abs().max() < 0.1


def test_triplet_loss_module_and_errors():
    x, labels = embedded_batch(seed=4)
    loss = TripletLoss(margin=0.2, sampler=DistanceWeightedSampler(generator=gen(1)))
    anchor, positive, negative = DistanceWeightedSampler(generator=gen(1))(x, labels)
    torch.testing.assert_close(loss(x, labels), triplet_loss(x[anchor], x[positive], x[negative], 0.2))
    with pytest.raises(ValueError, match="2 examples"):
        loss(x[:4], torch.arange(4))
    with pytest.raises(ValueError, match="2 classes"):
        loss(x[:4], torch.zeros(4, dtype=torch.long))


# ---------------------------------------------------------------- DarkRank (HardRank)


def loop_darkrank(student, teacher, alpha, beta, k, top_k_only=False):
    n = student.shape[0]
    total = 0.0
    for q in range(n):
        t_dist = {x: float((teacher[q] - teacher[x]).norm()) for x in range(n) if x != q}
        order = sorted(t_dist, key=lambda x: t_dist[x])[:k]
        score = {x: -alpha * (student[q] - student[x]).norm() ** beta for x in range(n) if x != q}
        remaining = list(order) if top_k_only else [x for x in range(n) if x != q]
        for x in order:
            total = total - (score[x] - torch.logsumexp(torch.stack([score[y] for y in remaining]), 0))
            remaining.remove(x)
    return total / n


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("normalizer", ["top_k", "all_remaining"])
def test_darkrank_matches_plackett_luce_loop(k, normalizer):
    s = torch.randn(7, 3, generator=gen(0), dtype=torch.float64, requires_grad=True)
    t = torch.randn(7, 5, generator=gen(1), dtype=torch.float64)
    loss = DarkRankLoss(alpha=3.0, beta=3.0, k=k, normalizer=normalizer)
    torch.testing.assert_close(loss(s, t), loop_darkrank(s, t, 3.0, 3.0, k, top_k_only=normalizer == "top_k"))
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (s,))


def test_darkrank_default_is_top_k_and_full_list_agrees():
    s = torch.randn(6, 3, generator=gen(2), dtype=torch.float64)
    t = torch.randn(6, 4, generator=gen(3), dtype=torch.float64)
    assert DarkRankLoss().normalizer == "top_k"
    torch.testing.assert_close(DarkRankLoss()(s, t), DarkRankLoss(normalizer="top_k")(s, t))
    # over the whole list the two normalisers are the same thing
    full = DarkRankLoss(k=None, normalizer="all_remaining")(s, t)
    torch.testing.assert_close(DarkRankLoss(k=5, normalizer="top_k")(s, t), full)
    torch.testing.assert_close(DarkRankLoss(k=None)(s, t), full)
    with pytest.raises(ValueError, match="at least 5"):
        DarkRankLoss(k=4)(s[:4], t[:4])
    with pytest.raises(ValueError, match="all_remaining"):
        DarkRankLoss(normalizer="whole_batch")


def test_darkrank_duplicates_are_finite():
    s = torch.randn(6, 3, generator=gen(4))
    s[2] = s[1]
    s.requires_grad_(True)
    DarkRankLoss()(s, torch.randn(6, 4, generator=gen(5))).backward()
    assert torch.isfinite(s.grad).all()


# ---------------------------------------------------------------- prototypical


def loop_prototypical(support, support_labels, query, query_labels):
    classes = sorted(set(support_labels.tolist()))
    centres = {c: torch.stack([support[i] for i in range(len(support)) if support_labels[i] == c]).mean(0)
               for c in classes}
    total = 0.0
    correct = 0
    for q, label in zip(query, query_labels.tolist()):
        logits = torch.stack([-((q - centres[c]) ** 2).sum() for c in classes])
        total = total - (logits[classes.index(label)] - torch.logsumexp(logits, 0))
        correct += int(classes[int(logits.argmax())] == label)
    return total / len(query), correct / len(query)


def test_prototypical_matches_loop_and_gradcheck():
    support = torch.randn(6, 4, generator=gen(0), dtype=torch.float64, requires_grad=True)
    support_labels = torch.tensor([5, 5, 1, 1, 8, 8])
    query = torch.randn(5, 4, generator=gen(1), dtype=torch.float64)
    query_labels = torch.tensor([1, 8, 5, 5, 1])
    expected_loss, expected_accuracy = loop_prototypical(support, support_labels, query, query_labels)
    torch.testing.assert_close(prototypical_loss(support, support_labels, query, query_labels), expected_loss)
    # the nearest prototype, as the few-shot evaluation (rkd.evaluate.episode_accuracies) classifies
    classes, logits = prototypical_logits(support, support_labels, query)
    predicted = classes[logits.argmax(dim=1)]
    assert (predicted == query_labels).double().mean().item() == pytest.approx(expected_accuracy)
    assert torch.autograd.gradcheck(
        lambda s: prototypical_loss(s, support_labels, query, query_labels), (support,))
    with pytest.raises(ValueError, match="support labels"):
        prototypical_loss(support, support_labels, query, torch.tensor([1, 8, 5, 5, 3]))


def test_split_episode_layout():
    n_way, k_shot, n_query = 2, 2, 3
    labels = torch.tensor([4] * 5 + [0] * 5)
    x = torch.arange(10, dtype=torch.float64).unsqueeze(1)
    support, support_labels, query, query_labels = split_episode(x, labels, n_way, k_shot, n_query)
    assert support.squeeze(1).tolist() == [0, 1, 5, 6] and support_labels.tolist() == [4, 4, 0, 0]
    assert query.squeeze(1).tolist() == [2, 3, 4, 7, 8, 9] and query_labels.tolist() == [4, 4, 4, 0, 0, 0]
    with pytest.raises(ValueError, match="holds 10"):
        split_episode(x[:9], labels[:9], n_way, k_shot, n_query)
    with pytest.raises(ValueError, match="class-major"):
        split_episode(x, torch.tensor([4, 0] * 5), n_way, k_shot, n_query)
