"""Portable numerics: the same bits on every x86-64 CPU with AVX2 (the ci pin).

Seeded, deterministic kernels on one thread give the same numbers run after run on one
machine, but not on another: PyTorch's CPU libraries pick their code by the processor
they run on, and a training run turns the last-bit differences into different weights
within a few dozen steps. What we measured (60-step ``small_cnn`` triplet training,
one thread; the emulated CPUs run under ``qemu-x86_64 -cpu Haswell-v4`` (Intel) and
``-cpu EPYC-Rome`` (AMD), which execute IEEE arithmetic and FMA exactly as hardware does):

- **oneDNN** (convolutions) uses AVX-512 kernels where the CPU has them: capping it at
  AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) changes the weights on an AVX-512 machine.
- **MKL** (matrix products, ``exp``/``log``) takes another code path on Intel than on
  AMD, even in its AVX2 reproducibility mode (``MKL_CBWR=AVX2`` is documented to
  apply to Intel CPUs only). ``MKL_CBWR=COMPATIBLE`` (SSE2 code, fixed blocking) gives
  the same products on the Intel and AMD CPUs we could run.
- **ATen**'s own vectorised kernels (softmax, reductions) use AVX-512 vectors where
  present: ``ATEN_CPU_CAPABILITY=avx2`` fixes the vector width.
- **sqrt**: ``torch.sqrt`` (and ``pow(0.5)``, ``torch.cdist``) goes through MKL's
  vector maths library, whose float32/float64 square root is not correctly rounded
  and differed between real and emulated CPUs under every setting above (it uses an
  approximate instruction whose result is processor-specific). Nothing in the ci
  paths calls it: rkd's losses use :func:`sqrt` below, and Adam runs with
  ``fused=True``, whose kernel uses the exact hardware square root. A test
  (``tests/test_portable.py``) fails on any new use in ``rkd/``.
- **NNPACK** (a convolution library with its own CPU dispatch) is switched off.

With all of these, the weights after the same ci training are bit-identical natively
on an AMD EPYC with AVX-512 and on the emulated Intel Haswell and AMD EPYC-Rome
(``tests/test_portable.py`` runs that comparison). Cost: see the README.

The environment variables must be set before the libraries initialise, so
``import rkd.pin`` sets them (when ``torch`` has not done its work yet) unless
``RKD_PORTABLE_NUMERICS=0``; ``import rkd`` alone changes nothing (a library import has
no global effects), and ``rkd.experiments`` imports ``rkd.pin`` first.
:func:`rkd.runtime.configure_determinism` then checks that the pin is in effect with a
small canary computation and warns, saying how to fix it, when it is not. GPU runs are
not covered: results there depend on the GPU model.
"""
from __future__ import annotations

import hashlib
import os
import sys
import warnings

__all__ = [
    "PIN_ENVIRONMENT",
    "OPT_OUT_VARIABLE",
    "pin_environment",
    "pin_requested",
    "PortableNumericsWarning",
    "check_pin",
    "canary_digest",
    "sqrt",
]

#: the settings that must be in the environment before torch's libraries initialise
PIN_ENVIRONMENT: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
}
#: ``RKD_PORTABLE_NUMERICS=0`` leaves the environment alone (full native speed, results
#: that depend on the CPU)
OPT_OUT_VARIABLE = "RKD_PORTABLE_NUMERICS"

#: what :func:`pin_environment` found when ``import rkd`` ran it
_STATE: dict[str, object] = {"applied": False, "torch_was_loaded": None, "conflicts": {}}


class PortableNumericsWarning(UserWarning):
    """The CPU pin is not (fully) in effect: results may differ on another machine."""


def pin_requested() -> bool:
    """Whether the CPU pin is wanted: True unless :data:`OPT_OUT_VARIABLE` is set to
    ``0``, ``false``, ``no`` or ``off`` (lower case; surrounding spaces ignored)."""
    return os.environ.get(OPT_OUT_VARIABLE, "1").strip() not in ("0", "false", "no", "off")


def pin_environment() -> None:
    """Put :data:`PIN_ENVIRONMENT` into ``os.environ`` (``import rkd.pin`` calls it; must
    not import torch). A value the user set differently is kept and reported by
    :func:`check_pin`."""
    if not pin_requested():
        return
    _STATE["torch_was_loaded"] = "torch" in sys.modules
    conflicts = {}
    for name, value in PIN_ENVIRONMENT.items():
        current = os.environ.get(name)
        if current is None:
            os.environ[name] = value
        elif current.strip().lower() != value.lower():
            conflicts[name] = current
    _STATE["conflicts"] = conflicts
    _STATE["applied"] = True


# ------------------------------------------------------------------------------ checking

#: digest of :func:`canary_digest` under the pin, per torch version: the same on every
#: AVX2 machine we ran (native AMD EPYC with AVX-512; emulated Intel Haswell and AMD
#: EPYC-Rome). Another torch version has no known value, so the check is skipped.
EXPECTED_CANARY: dict[str, str] = {"2.14.1": "4a7364c6b4bc8a4b"}


def canary_digest() -> str:
    """A digest of a few computations that each pinned library decides: a convolution
    forward and backward (oneDNN), matrix products and ``exp``/``log`` (MKL), a softmax
    (ATen's vector kernels) and Adam's fused step. Inputs are exact functions of
    integers, so they do not depend on any random generator."""
    import torch
    import torch.nn.functional as F

    def pattern(*shape: int) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        # a fixed, irregular sequence in [-0.5, 0.5): exact integer arithmetic, then one division
        values = (torch.arange(n, dtype=torch.int64) * 2654435761 % 1009).to(torch.float32) / 1009.0 - 0.5
        return values.reshape(shape)

    with torch.enable_grad():
        x = pattern(8, 16, 14, 14).requires_grad_(True)
        w = pattern(32, 16, 3, 3).requires_grad_(True)
        y = F.conv2d(x, w, padding=1)
        (y * y).sum().backward()
    a, b = pattern(64, 300), pattern(300, 48)
    z = pattern(16, 1000)
    parameter = torch.nn.Parameter(pattern(50, 20))
    parameter.grad = pattern(50, 20)
    optimizer = torch.optim.Adam([parameter], lr=0.1, fused=True)
    optimizer.step()
    outputs = [
        y, x.grad, w.grad, a @ b, z.exp(), z.double().abs().add(1e-3).log(), F.log_softmax(z, dim=1),
        sqrt(z.abs() + 1e-3), parameter.detach(),
    ]
    digest = hashlib.sha256()
    for t in outputs:
        digest.update(t.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_pin(*, run_canary: bool = True) -> list[str]:
    """What keeps the pin from being in effect, as sentences (empty: it is in effect)."""
    import torch

    problems = []
    if not pin_requested():
        return [f"{OPT_OUT_VARIABLE}=0 switches the pin off"]
    if not _STATE["applied"]:
        problems.append("the pin was never asked for (import rkd.pin before torch)")
    for name, value in dict(_STATE["conflicts"]).items():
        problems.append(f"{name}={value!r} is set in the environment; the pin needs {PIN_ENVIRONMENT[name]!r}")
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        problems.append(
            f"ATen runs its {capability} kernels, not AVX2"
            + (" (this CPU lacks AVX2: results cannot match other machines)" if capability == "DEFAULT" else "")
        )
    if run_canary and not problems:
        expected = EXPECTED_CANARY.get(torch.__version__.split("+")[0])
        if expected is not None:
            found = canary_digest()
            if found != expected:
                problems.append(
                    f"the canary computation gives {found}, not the pinned {expected}: a library (MKL or oneDNN) "
                    f"initialised before the environment was set"
                )
    return problems


def warn_unless_pinned() -> bool:
    """Warn (once per distinct problem list) when the pin is not in effect; True when it is."""
    problems = check_pin()
    if not problems:
        return True
    if not pin_requested():
        return False  # the user asked for native speed; nothing to warn about
    hint = (
        "import rkd.pin before torch (or start Python with "
        + " ".join(f"{k}={v}" for k, v in PIN_ENVIRONMENT.items())
        + " in the environment) and unset conflicting variables"
    )
    if _STATE["torch_was_loaded"]:
        hint = "torch was imported before rkd.pin; " + hint
    key = tuple(problems)
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(
            "results will not be bit-identical on other CPUs: " + "; ".join(problems) + f". To fix: {hint}.",
            PortableNumericsWarning,
            stacklevel=3,
        )
    return False


_WARNED: set[tuple[str, ...]] = set()


# ------------------------------------------------------------------------------ maths


def sqrt(x):
    """``sqrt(x)`` for ``x > 0`` from ATen's own kernels (the exact hardware square root and
    division), never MKL's vector square root, whose last bits depend on the processor.

    float64: ``x * rsqrt(x)``, within 1.5 units in the last place. float32 (and lower):
    the same in float64, rounded once, i.e. the correctly rounded square root except in
    the rare case (about 1 in 10^8) where the float64 value lies within 1.5 of its units
    of a float32 rounding boundary. Deterministic on every CPU either way. Callers clamp
    ``x`` away from zero (``rsqrt(0)`` is inf).
    """
    import torch  # here, not at the top: ``import rkd`` must set the environment before torch loads

    if x.dtype == torch.float64:
        return x * x.rsqrt()
    wide = x.double()
    return (wide * wide.rsqrt()).to(x.dtype)
