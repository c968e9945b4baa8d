"""The CPU pin (rkd.portable): the same ci training gives bit-identical weights on any
x86-64 CPU with AVX2, and without the pin it would not.

Other CPUs are emulated two ways: environment variables that make the libraries take
their AVX2 code on this machine (fast), and, where ``qemu-x86_64`` is installed (the
Makefile installs Debian's qemu-user as root), a whole processor of the other vendor: an
Intel Haswell (AVX2, no AVX-512) on an AMD machine, an AMD EPYC Rome on an Intel one,
emulated instruction by instruction, with its own vendor string and cache sizes. QEMU
computes IEEE arithmetic and FMA exactly, as hardware does; only approximate
instructions (rsqrt, rcp) differ from real chips, and the pin keeps the ci code off them.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).with_name("portable_probe.py")
AVX2_MACHINE = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
PIN_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS",
                 "RKD_PORTABLE_NUMERICS")


def _has_avx512() -> bool:
    try:
        return " avx512f " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


def probe(extra: dict[str, str], *, prefix: tuple[str, ...] = (), timeout: int = 900) -> str:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    env.update({"OMP_NUM_THREADS": "1", **extra})
    done = subprocess.run([*prefix, sys.executable, str(PROBE)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("weights="), done.stdout
    return line


def weights(line: str) -> str:
    return re.match(r"weights=(\w+)", line).group(1)


@pytest.mark.slow
def test_pinned_training_is_identical_when_the_libraries_take_their_avx2_code():
    native = probe({})
    assert "pinned=True" in native
    for name, value in AVX2_MACHINE.items():
        assert probe({name: value}) == native, f"{name}={value} changed the pinned training"
    assert probe(AVX2_MACHINE) == native


@pytest.mark.slow
def test_without_the_pin_an_avx2_machine_would_train_other_weights():
    if not _has_avx512():
        pytest.skip("this CPU has no AVX-512: native and AVX2 kernels are the same code here, so the unpinned "
                    "comparison cannot differ (it is run on AVX-512 machines)")
    native = probe({"RKD_PORTABLE_NUMERICS": "0"})
    emulated = probe({"RKD_PORTABLE_NUMERICS": "0", **AVX2_MACHINE})
    assert "pinned=False" in native
    assert weights(native) != weights(emulated), "the unpinned kernels should depend on the CPU here"


QEMU = shutil.which("qemu-x86_64")
#: the emulated processor of each vendor: an Intel Haswell (AVX2, no AVX-512) and an AMD EPYC Rome
EMULATED = {"GenuineIntel": "Haswell-v4", "AuthenticAMD": "EPYC-Rome"}


def _vendor() -> str:
    try:
        found = re.search(r"^vendor_id\s*:\s*(\S+)", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        return ""
    return found.group(1) if found else ""


def _other_vendor_cpu() -> str:
    """The emulated processor of the vendor this machine is *not* (Intel on AMD and the
    reverse): the comparison that a second real machine would make, at half the cost of
    emulating both (each emulated run takes minutes)."""
    vendor = _vendor()
    return EMULATED["AuthenticAMD" if vendor == "GenuineIntel" else "GenuineIntel"]


@pytest.mark.slow
@pytest.mark.skipif(QEMU is None, reason="qemu-x86_64 is not installed (Debian: apt-get install qemu-user); the "
                                         "environment-variable emulation above still runs")
def test_pinned_training_is_identical_on_an_emulated_processor_of_the_other_vendor():
    cpu = _other_vendor_cpu()
    native = probe({})
    emulated = probe({}, prefix=(QEMU, "-cpu", cpu), timeout=1800)
    assert emulated == native, f"pinned training differs on an emulated {cpu} (this machine: {_vendor()})"


# the package's core modules: importing them (what a library user does) must not pin the CPU either
CORE_MODULES = ("rkd.losses", "rkd.methods", "rkd.distill", "rkd.train", "rkd.models", "rkd.data", "rkd.metrics")
# torch's process-wide settings and its global random state, before and after the imports
_TORCH_STATE = ("(torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(), torch.get_default_dtype(), "
                "torch.get_rng_state().tolist())")


def test_import_rkd_pin_puts_the_pin_into_the_environment_before_torch_and_import_rkd_does_not():
    code = "import os, rkd{}; print(*(os.environ.get(k, '-') for k in ('ONEDNN_MAX_CPU_ISA', 'MKL_CBWR', " \
           "'ATEN_CPU_CAPABILITY')))"
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    pinned = subprocess.run([sys.executable, "-c", code.format(".pin")], env=env, capture_output=True, text=True,
                            check=True)
    assert pinned.stdout.split() == ["AVX2", "COMPATIBLE", "avx2"]
    plain = subprocess.run([sys.executable, "-c", code.format("")], env=env, capture_output=True, text=True,
                           check=True)
    assert plain.stdout.split() == ["-", "-", "-"]
    # the core modules import torch and much else: still no pin, and torch's global state untouched
    core = (f"import torch\nbefore = {_TORCH_STATE}\nimport {', '.join(CORE_MODULES)}\n"
            f"import os\nprint(*(os.environ.get(k, '-') for k in ('ONEDNN_MAX_CPU_ISA', 'MKL_CBWR', "
            f"'ATEN_CPU_CAPABILITY')), 'unchanged' if {_TORCH_STATE} == before else 'changed')")
    imported = subprocess.run([sys.executable, "-c", core], env=env, capture_output=True, text=True, check=True)
    assert imported.stdout.split() == ["-", "-", "-", "unchanged"], imported.stdout


def _configure(code: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    env.update(extra)
    return subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True,
                          check=True)


def test_torch_used_before_rkd_is_reported_with_the_fix():
    late = _configure("import torch\n"
                      "torch.nn.functional.conv2d(torch.randn(2, 16, 14, 14), torch.randn(32, 16, 3, 3))\n"
                      "torch.randn(64, 300) @ torch.randn(300, 48)\n"
                      "import rkd.runtime\nprint(rkd.runtime.configure_determinism(threads=1))")
    assert late.stdout.strip() == "False"
    assert "PortableNumericsWarning" in late.stderr and "import rkd.pin before torch" in late.stderr
    on_time = _configure("import rkd.pin\nimport rkd.runtime\nprint(rkd.runtime.configure_determinism(threads=1))")
    assert on_time.stdout.strip() == "True" and "PortableNumericsWarning" not in on_time.stderr


def test_a_conflicting_variable_and_the_opt_out():
    conflict = _configure("import rkd.pin\nimport rkd.runtime\nprint(rkd.runtime.configure_determinism(threads=1))",
                          MKL_CBWR="AVX2")
    assert conflict.stdout.strip() == "False" and "MKL_CBWR='AVX2' is set" in conflict.stderr
    opted_out = _configure("import rkd.pin\nimport rkd.runtime\nprint(rkd.runtime.configure_determinism(threads=1))",
                           RKD_PORTABLE_NUMERICS="0")
    assert opted_out.stdout.strip() == "False" and "PortableNumericsWarning" not in opted_out.stderr


# tensor calls whose float results go through MKL's vector maths (processor-specific last
# bits); Python's and NumPy's sqrt are correctly rounded everywhere. A pow with any exponent
# but an integer literal counts too: its backward takes pow(x, p - 1), MKL's sqrt for p = 1.5
# (how DarkRank's d^3 once slipped through). tests/portable_probe.py checks every loss term
# at run time as well, for what no pattern can see.
_UNPORTABLE = re.compile(r"(?<!math)(?<!np)\.sqrt_?\(|torch\.sqrt|\bcdist\(|\*\* ?0\.5|\.pow\((?!\s*-?\d+\s*\))"
                         r"|torch\.pow\(|(?<!math)\.hypot\(")


def test_no_processor_dependent_square_root_in_the_package():
    offenders = []
    for path in sorted((ROOT / "rkd").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0] if "portable-numerics: ok" not in line else ""
            if _UNPORTABLE.search(code) and not line.lstrip().startswith(('"', "'", "#")):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    offenders = [o for o in offenders if not o.startswith("rkd/portable.py")]
    assert not offenders, "use rkd.portable.sqrt (or mark a test-only use 'portable-numerics: ok'):\n" + "\n".join(
        offenders)
