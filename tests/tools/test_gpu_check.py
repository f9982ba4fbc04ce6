"""tools/misc/gpu_check.sh: on a host without CUDA it says so and exits 0
(on a GPU machine it is the one command that runs the CUDA checks)."""
import pytest
import torch

from ._run import ROOT, TOOLS, run


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='this host has CUDA: run the script itself')
def test_without_cuda_it_says_so_and_succeeds(tmp_path):
    code, out = run(['bash', f'{TOOLS}/misc/gpu_check.sh'], cwd=ROOT,
                    GPU_CHECK_OUT=str(tmp_path / 'out'))
    assert code == 0
    assert 'gpu_check: no CUDA device here' in out
    assert not (tmp_path / 'out').exists()
