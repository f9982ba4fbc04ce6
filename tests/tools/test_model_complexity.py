"""tools/analysis_tools/model_complexity.py as a subprocess."""
import json
import os.path as osp
import sys

from tests.tools._run import run

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'model_complexity.py')


def test_counts_of_a_glob_with_json(tmp_path):
    out = tmp_path / 'counts.json'
    code, text = run([sys.executable, TOOL,
                      osp.join(ROOT, 'configs', 'resnet20_[bc]*_cifar100.py'),
                      '--json', str(out)], cwd=ROOT)
    rows = {r['config']: r for r in json.loads(out.read_text())}
    assert rows['resnet20_baseline_cifar100']['params'] == 278324
    assert rows['resnet20_c3_cifar100']['params'] == 278324 + 68880
    assert rows['resnet20_convs_cifar100']['shape'] == [3, 32, 32]
    assert '| resnet20_c3_cifar100 | 32x32 | 347,204 |' in text


def test_seed_tables_print_seed_and_ours_side_by_side():
    code, text = run([sys.executable, TOOL, '--seed-tables', '--no-flops',
                      '--strict'], cwd=ROOT, check=False)
    assert code == 1  # the known disagreements (tests/analysis)
    assert '### seed 001 Table 1: CIFAR-100' in text
    assert ('| ResNet-20 + NC | resnet20_c3_cifar100 | 0.35M | 0.347M | yes '
            in text)
    assert ('| ResNeXt-50 + NC | resnext50_4x32d_c3_in1k | 35.29M | 35.261M '
            '| NO |' in text)
    assert '5 disagreement(s)' in text


def test_thop_counter_reproduces_the_seed_baseline():
    code, text = run([sys.executable, TOOL, '--counter', 'thop',
                      osp.join(ROOT, 'configs',
                               'resnet20_baseline_cifar100.py')], cwd=ROOT)
    assert '| resnet20_baseline_cifar100 | 32x32 | 278,324 | 41.735M |' \
        in text


def test_bad_input_is_a_clear_error():
    code, text = run([sys.executable, TOOL, 'configs/no_such_*.py'],
                     cwd=ROOT, check=False)
    assert code != 0 and "no config matches 'configs/no_such_*.py'" in text
    code, text = run([sys.executable, TOOL], cwd=ROOT, check=False)
    assert code == 2 and 'give config files or globs' in text
