"""``import rkd.pin``, before torch is imported: the CPU pin of :mod:`rkd.portable` goes
into this process's environment, so that its results are bit-identical on every x86-64
CPU with AVX2 (and its CPU kernels run at AVX2 speed, no faster).

The libraries read the settings once, when they initialise: imported after torch has
computed anything, the pin may come too late, and
:func:`rkd.runtime.configure_determinism` then warns (a
:class:`~rkd.portable.PortableNumericsWarning` saying how to fix it). ``rkd.experiments``
imports this module first, so every notebook, ``python -m rkd.experiments.launch`` and
``make`` run pinned; ``RKD_PORTABLE_NUMERICS=0`` opts out.
"""
from .portable import pin_environment

pin_environment()
