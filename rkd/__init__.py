"""rkd: Relational Knowledge Distillation (Park et al., CVPR 2019) and Relational
Representation Distillation, as a small library: losses, datasets, models, metrics
and one training loop.

Importing rkd puts the CPU pin of :mod:`rkd.portable` into the environment (before
torch's libraries read it), so that ci-scale results are bit-identical on any x86-64
CPU with AVX2; ``RKD_PORTABLE_NUMERICS=0`` opts out.
"""

from .portable import pin_environment as _pin_environment

_pin_environment()

__version__ = "0.2.1"
