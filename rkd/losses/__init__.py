"""Losses of Relational Knowledge Distillation and its baselines, one concept per module.

- :mod:`rkd.losses.relational`: RKD distance and angle (eq. 5-10), RKD-DA.
- :mod:`rkd.losses.rrd`: RRD, relational representation distillation.
- :mod:`rkd.losses.pairwise`: the squared distances behind them (Gram matrix, error bound,
  close pairs from their differences, hand-written backward).
- :mod:`rkd.losses.individual`: HKD (eq. 2), FitNet (eq. 3), attention transfer.
- :mod:`rkd.losses.metric`: triplet with distance-weighted sampling (eq. 12), DarkRank.
- :mod:`rkd.losses.fewshot`: prototypical loss.
- :mod:`rkd.losses.terms`: the same losses behind one signature, registered in ``LOSS_TERMS``.
"""
from rkd.losses.fewshot import prototypical_logits, prototypical_loss, split_episode
from rkd.losses.individual import FitNetLoss, attention_loss, attention_map, hkd
from rkd.losses.metric import DarkRankLoss, DistanceWeightedSampler, TripletLoss, triplet_loss
from rkd.losses.relational import RKDLoss, rkd_angle, rkd_distance
from rkd.losses.rrd import RRDLoss
from rkd.losses.terms import LOSS_TERMS, LossTerm, TermContext

__all__ = [
    "rkd_distance", "rkd_angle", "RKDLoss", "RRDLoss",
    "hkd", "FitNetLoss", "attention_map", "attention_loss",
    "triplet_loss", "TripletLoss", "DistanceWeightedSampler", "DarkRankLoss",
    "prototypical_logits", "prototypical_loss", "split_episode",
    "LOSS_TERMS", "LossTerm", "TermContext",
]
