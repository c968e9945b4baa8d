"""rkd: Relational Knowledge Distillation (Park et al., CVPR 2019) and Relational
Representation Distillation, as a small library: losses, datasets, models, metrics
and one training loop."""

__version__ = "0.1.0"
