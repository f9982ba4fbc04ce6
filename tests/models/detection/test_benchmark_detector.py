"""Smoke test of tools/analysis_tools/benchmark_detector.py (worker mode,
in-process, on shrunk copies of two detector configs)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from tests._shrink_mmdet import shrink_config

ROOT = Path(__file__).resolve().parents[3]
TOOL = ROOT / 'tools' / 'analysis_tools' / 'benchmark_detector.py'


@pytest.fixture(autouse=True)
def _restore_threads():
    """The worker sets torch's thread count; give it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load_tool():
    spec = importlib.util.spec_from_file_location('benchmark_detector', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name,with_blocks,impl', [
    ('baseline', False, None),
    ('c3', True, None),
    ('c3', True, 'dense'),
])
def test_worker_times_one_training_iteration(name, with_blocks, impl,
                                             tmp_path, capsys):
    small = shrink_config(
        Config.fromfile(str(ROOT / 'configs' / f'faster_rcnn_r101_{name}.py')))
    path = tmp_path / f'small_{name}.py'
    small.dump(str(path))
    tool = load_tool()
    extra = ['--c3-message-impl', impl] if impl else []
    tool.main([str(path), '--worker', '--size', '64', '--rois', '4',
               '--warmup', '0', '--iters', '2', '--threads', '1'] + extra)
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith('RESULT ')]
    assert len(lines) == 1
    result = json.loads(lines[0][len('RESULT '):])
    assert len(result['times']) == 2 and min(result['times']) > 0
    assert (result['block_params'] > 0) == with_blocks
    assert result['params'] > result['block_params']
    assert result['threads'] == 1
    if impl:
        assert result['c3_message_impls'] == [impl]
    else:  # as configured
        assert len(result['c3_message_impls']) == int(with_blocks)
