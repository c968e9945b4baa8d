"""Test-wide settings: one fixed thread count and deterministic kernels, so numeric
tests compare bit-for-bit stable values; every test starts from the same seed."""
import pytest

import rkd.pin  # noqa: F401  (before torch: the CPU pin goes into the environment first, as the experiments ask)
import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
