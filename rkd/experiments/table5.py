"""Table 5: few-shot accuracy on Omniglot of prototypical networks self-distilled with
RKD-D and RKD-DA, against their teacher (5- and 20-way, 1- and 5-shot).

Paper: Snell et al.'s procedure on the Vinyals split, 4-conv embedding, 1,000 test
episodes. ci: the glyph stand-in of Omniglot (alphabets are scripts; background and
evaluation alphabets disjoint, 20 renders per character).
"""
from __future__ import annotations

from ..outputs import TAP_NAMES
from ..models.spec import ModelSpec
from ..train import TrainConfig
from . import datasets as D
from .fewshot_tables import FewShotTable, fewshot_presets
from .recipes import FewShotRecipe

PAPER_EPISODES = 20_000  # Snell et al. stop on the validation loss; we train a fixed number
#: at 1,500 episodes the 1-shot teacher was still climbing (20-way accuracy +0.95 points over its
#: last fifth, the mean of five seeds, against the 0.5 the convergence rule allows;
#: rkd.runs.convergence), and a teacher of 3,000 episodes still +1.03; at 6,000 teacher and student
#: both settle (seed 0: +0.34 and -0.15). Teacher and students train alike, as Snell et al.'s.
CI_EPISODES = 6000


def halving(episodes: int) -> TrainConfig:
    """Snell et al.'s halving of the learning rate, at a third and two thirds of the episodes."""
    return TrainConfig(steps=episodes, optimizer="adam", lr=1e-3, milestones=(episodes // 3, 2 * episodes // 3),
                       gamma=0.5)


CI = FewShotRecipe(
    network=ModelSpec("conv4", (("in_channels", 1), ("input_size", 28), ("hidden_channels", 32), ("taps", TAP_NAMES))),
    train=halving(CI_EPISODES),
    # Snell et al. train on more classes per episode than they test (60 vs 5 or 20); the
    # CPU budget allows 10-way training episodes
    train_way={1: 10, 5: 10}, train_query=5, test_ways=(5, 20), test_query=5, test_episodes=200,
    eval_every=CI_EPISODES // 10,
)
CI_NOTES = (f"the glyph stand-in of Omniglot (alphabets are scripts; no rotated copies as extra "
            f"classes); `conv4` with 32 channels, {CI_EPISODES:,} 10-way training episodes with 5 queries "
            f"per class per model (1,500 until 2026-12-07: the 1-shot teacher was then still climbing), "
            f"200 test episodes with 5 queries per setting, CPU")
PAPER = FewShotRecipe(
    network=ModelSpec("conv4", (("in_channels", 1), ("input_size", 28), ("hidden_channels", 64), ("taps", TAP_NAMES))),
    train=TrainConfig(steps=PAPER_EPISODES, optimizer="adam", lr=1e-3,
                      milestones=tuple(range(2000, PAPER_EPISODES, 2000)), gamma=0.5, checkpoint_every=2000),
    train_way={1: 60, 5: 60}, train_query=5, test_ways=(5, 20), test_query=15, test_episodes=1000,
    # ten evaluations along training: a run supports a verdict only once it shows it converged
    eval_every=PAPER_EPISODES // 10,
)
PAPER_NOTES = ("the paper's protocol: Omniglot, Vinyals split (rotations as classes), 28x28, `conv4` "
               f"with 64 channels, 60-way training episodes, a fixed {PAPER_EPISODES:,} episodes per "
               f"model, 1,000 test episodes")


class Table5(FewShotTable):
    name = "table5"
    title = "Table 5"
    subtitle = "few-shot learning on Omniglot"
    page = "notebooks/table5_omniglot"
    paper_name = "Omniglot"
    methods = ("RKD-D", "RKD-DA")
    primary = tuple(("RKD-DA", way, shot) for way in (5, 20) for shot in (1, 5))
    intro = """
The paper's Table 5 trains a prototypical network (Snell et al.) on Omniglot as the
teacher, then students of the same 4-conv architecture with the prototypical loss plus
RKD-D or RKD-DA, and reports 5- and 20-way, 1- and 5-shot accuracy. The students beat
their teacher by a few tenths of a point in every setting but one: RKD-DA at 20-way
5-shot (98.67 against the teacher's 98.68).
"""
    presets = fewshot_presets(ci=(D.GLYPHS_OMNIGLOT, CI, CI_NOTES), paper=(D.OMNIGLOT, PAPER, PAPER_NOTES))


EXPERIMENT = Table5()
