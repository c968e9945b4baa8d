"""rkd: Relational Knowledge Distillation (Park et al., CVPR 2019) and Relational
Representation Distillation, as a small library: losses, datasets, models, metrics
and one training loop.

Importing rkd changes nothing outside it. The CPU pin that makes stand-in results
bit-identical on every x86-64 CPU with AVX2 (:mod:`rkd.portable`, at some cost in
speed) is asked for: ``import rkd.pin`` before torch is imported (the experiments,
their notebooks and the Makefile do), or the environment variables it names.
"""

__version__ = "0.2.1"
