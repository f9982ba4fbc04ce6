"""Random-state save and restore (the parts of mmc3.utils.resume that the
end-to-end kill/resume tests in tests/tools do not isolate)."""
import random

import numpy as np
import pytest
import torch

from mmc3.utils import RandomStateHook, get_random_state, set_random_state


def _draw():
    return (random.random(), float(np.random.rand()),
            float(torch.rand(())))


def test_state_round_trip_repeats_every_generator(tmp_path):
    state = get_random_state()
    first = _draw()
    # through a file, loaded as the hook loads it (weights_only=True)
    torch.save(state, tmp_path / 'state.pth')
    set_random_state(torch.load(tmp_path / 'state.pth', weights_only=True))
    assert _draw() == first


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='needs CUDA: the CUDA generators are saved only '
                    'where CUDA is initialised')
def test_cuda_generators_are_saved_and_restored():
    torch.cuda.init()
    torch.rand(1, device='cuda')
    state = get_random_state()
    assert 'cuda' in state
    first = torch.rand(3, device='cuda').cpu()
    set_random_state(state)
    assert torch.equal(torch.rand(3, device='cuda').cpu(), first)


def test_hook_argument_is_checked():
    with pytest.raises(TypeError, match='RandomStateHook: strict must be a '
                       'bool, got str'):
        RandomStateHook(strict='yes')
