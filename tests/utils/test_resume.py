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


def _tiny_test_runner(work_dir, default_hooks=None):
    """A real mmengine test run: a one-parameter model, four samples and a
    metric that reports their mean, built by :class:`AtomicCheckpointRunner`."""
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel

    from mmc3.utils import AtomicCheckpointRunner

    class Model(BaseModel):

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, inputs, data_samples=None, mode='tensor'):
            return [dict(value=float(v)) for v in inputs * self.w]

    class Mean(BaseMetric):

        def process(self, data_batch, data_samples):
            self.results.extend(s['value'] for s in data_samples)

        def compute_metrics(self, results):
            return dict(mean=sum(results) / len(results))

    loader = dict(dataset=[dict(inputs=torch.tensor(float(i))) for i in range(4)],
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'), batch_size=2)
    return AtomicCheckpointRunner(
        model=Model(), work_dir=str(work_dir), test_dataloader=loader,
        test_cfg=dict(), test_evaluator=Mean(), default_hooks=default_hooks)


@pytest.mark.parametrize('main', [True, False])
def test_test_metrics_file_is_written_by_the_main_process_only(
        tmp_path, monkeypatch, main):
    """Every rank shares the test metrics path: the main process writes it
    (complete JSON), another rank only logs the metrics."""
    import glob
    import json

    import mmc3.utils.resume as resume
    runner = _tiny_test_runner(tmp_path)
    monkeypatch.setattr(resume, 'is_main_process', lambda: main)
    logged = []
    monkeypatch.setattr(runner.logger, 'info',
                        lambda msg, *args, **kwargs: logged.append(msg))
    assert runner.test() == {'mean': 1.5}
    written = glob.glob(str(tmp_path / '2*' / '2*.json'))
    if main:
        assert len(written) == 1
        with open(written[0]) as f:
            assert json.load(f)['mean'] == 1.5
    else:
        assert written == []
    assert any('mean: 1.5000' in str(msg) for msg in logged)


def test_runner_uses_the_main_process_logger_for_mmengines_logger(tmp_path):
    """The default and a config's ``type='LoggerHook'`` (with its options)
    become MainProcessLoggerHook; a logger of another type and a removed
    logger are left as the config says."""
    from mmengine.hooks import LoggerHook

    from mmc3.utils import MainProcessLoggerHook

    def loggers(default_hooks):
        runner = _tiny_test_runner(tmp_path, default_hooks)
        return [h for h in runner.hooks if isinstance(h, LoggerHook)]

    hook, = loggers(None)
    assert type(hook) is MainProcessLoggerHook
    for kind in ('LoggerHook', 'mmengine.LoggerHook', LoggerHook):
        hook, = loggers(dict(logger=dict(type=kind, interval=3)))
        assert type(hook) is MainProcessLoggerHook and hook.interval == 3

    class OwnLogger(LoggerHook):
        pass

    hook, = loggers(dict(logger=dict(type=OwnLogger)))
    assert type(hook) is OwnLogger
    assert loggers(dict(logger=None)) == []
