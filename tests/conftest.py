"""Shared fixtures for the mmc3 test suite (CPU only)."""
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny tensors run fastest on one thread; intra-op threads only contend
    on a small CI machine (a shrunk detector step: 5 s -> 0.4 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
