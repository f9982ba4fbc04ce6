"""The six analysis commands as subprocesses on tiny seeded classifiers
(the quickstart's ResNet-20 configs, random weights) and generated images;
the label-free ones also on the quickstart detector and segmenter."""
import json
import os.path as osp
import sys

import pytest

from tests.tools import _analysis_data as data
from tests.tools._run import ROOT, generate, run

pytest.importorskip('mmpretrain', reason='mmpretrain is not installed')
TOOLS = osp.join(ROOT, 'tools', 'analysis_tools')
NUM_IMAGES = 12  # 3 classes x 4 images


@pytest.fixture(scope='module')
def cls(tmp_path_factory):
    """{variant: (config, checkpoint)} for baseline, c3 and se, and the
    image folder under 'root'."""
    tmp = tmp_path_factory.mktemp('analysis_cls')
    root = data.image_folder(tmp / 'images')
    out = dict(root=root)
    for seed, variant in enumerate(('baseline', 'c3', 'se')):
        cfg = data.config(tmp / f'{variant}.py', variant, root)
        out[variant] = (cfg, data.checkpoint(cfg, tmp / f'{variant}.pth',
                                             seed))
    return out


def tool(name, *args, check=True):
    return run([sys.executable, osp.join(TOOLS, f'{name}.py'),
                *map(str, args)], cwd=ROOT, check=check)


def pair(cls, first='baseline', second='c3'):
    (c1, k1), (c2, k2) = cls[first], cls[second]
    return [c1, c2, '--checkpoint', k1, '--checkpoint', k2, '--label', first,
            '--label', second]


def check_png(path, min_side=150):
    from PIL import Image
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == 'PNG'
        assert min(img.size) >= min_side, img.size


def test_channel_diversity_compares_models_at_the_same_points(cls, tmp_path):
    _, text = tool('channel_diversity', *pair(cls), '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'diversity.json').read_text())
    base, c3 = result['diversity']['baseline'], result['diversity']['c3']
    shared = ['backbone.layer1:input', 'backbone.layer1', 'backbone.layer2',
              'backbone.layer3']
    assert set(base) == set(shared)
    blocks = [p for p in c3 if 'c3_block' in p]
    assert len(blocks) == 6  # three C3 blocks, input and output each
    assert set(c3) == set(shared) | set(blocks)
    for values in (base, c3):
        for r in values.values():
            assert 0.0 <= r['mean'] <= 1.0 and r['n'] == NUM_IMAGES
    assert result['labels']['backbone.layer1:input'] == 'stem'
    assert result['num_images'] == 500 and result['images'] == NUM_IMAGES
    # the points run in forward order: the stem's C3 block before stage 1
    assert result['points'].index(
        'backbone.after_stem_plugins.c3_block') < \
        result['points'].index('backbone.layer1')
    check_png(tmp_path / 'diversity.png')


def test_class_activation_maps_explain_the_logits(cls, tmp_path):
    tool('class_activation_maps', *pair(cls), '--num-show', 3, '--topk', 4,
         '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'cam.json').read_text())
    for label in ('baseline', 'c3'):
        r = result['cam'][label]
        assert r['images'] == NUM_IMAGES and len(r['shown']) == 3
        assert r['feature_shape'] == [64, 8, 8]
        assert all(len(s['top_channels']) == 4 for s in r['shown'])
        # mean(CAM) + b and the logit are one float32 sum of 64 terms
        assert r['max_logit_residual'] < 1e-4
    check_png(tmp_path / 'cam.png')
    check_png(tmp_path / 'cam_topk.png')


def test_class_selectivity_of_the_last_stage_blocks(cls, tmp_path):
    tool('class_selectivity', *pair(cls), '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'selectivity.json').read_text())
    blocks = [f'backbone.layer3.{i}' for i in range(3)]
    for label in ('baseline', 'c3'):
        assert result['blocks'][label] == blocks
        for block in blocks:
            si = result['selectivity'][label][block]['si']
            assert len(si) == 64 and all(0.0 <= v <= 1.0 for v in si)
    check_png(tmp_path / 'selectivity.png')


def test_channel_ablation_ends_at_the_constant_logit_accuracy(cls, tmp_path):
    tool('channel_ablation', *pair(cls), '--runs', 2, '--steps', 4,
         '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'ablation.json').read_text())
    assert result['fractions'] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for label in ('baseline', 'c3'):
        r = result['top1'][label]
        assert r['point'] == 'backbone.layer3' and r['channels'] == 64
        assert len(r['runs']) == 2
        # every channel of the pooled features zeroed: the logits are the
        # head's bias, one class for every image, 4 of the 12 balanced
        assert r['mean'][-1] == pytest.approx(100 * 4 / 12)
        assert r['runs'][0][0] == r['runs'][1][0]  # 0%: the model itself
    check_png(tmp_path / 'ablation.png')


def test_feature_importance_drops_se_channels_by_their_gate(cls, tmp_path):
    config, ckpt = cls['se']
    tool('feature_importance', config, '--checkpoint', ckpt, '--label', 'se',
         '--steps', 2, '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'importance.json').read_text())
    blocks = [f'backbone.layer3.{i}.se_block' for i in range(3)]
    assert result['blocks']['se'] == blocks
    assert result['ratios'] == [0.0, 0.5, 1.0]
    for block in blocks:
        curves = result['top1']['se'][block]
        assert curves['least'][0] == curves['most'][0]
        assert curves['least'][-1] == curves['most'][-1]  # all dropped
        assert all(0 <= v <= 100 for v in curves['least'] + curves['most'])
    check_png(tmp_path / 'importance.png')


def test_inhibited_channels_and_bn_biases(cls, tmp_path):
    tool('inhibited_channels', *pair(cls), '--threshold', 0.05,
         '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'inhibited.json').read_text())
    assert result['threshold'] == 0.05
    for label in ('baseline', 'c3'):
        r = result['results'][label]
        assert r['beta_nonpositive']['channels'] == r['inhibited'][
            'channels'] == 784  # ResNet-20's BN channels
        assert 0 <= r['inhibited']['all'] <= 1
        # stem, 2 per block x 9, the 2 projection shortcuts
        assert len(r['inhibited']['layers']) == 21
    check_png(tmp_path / 'inhibited.png')


def test_selectivity_warns_where_block_outputs_are_linear(cls, tmp_path):
    # MobileNetV2's blocks end in a linear bottleneck (no ReLU)
    config = tmp_path / 'mobilenet.py'
    config.write_text(f'''
_base_ = [{osp.join(ROOT, "configs", "mobilenet_v2_ce_in1k.py")!r}]
test_dataloader = dict(batch_size=4, dataset=dict(
    _delete_=True, type='CustomDataset', data_root={cls["root"]!r},
    data_prefix='test', pipeline=[dict(type='LoadImageFromFile'),
                                  dict(type='PackInputs')]))
''')
    ckpt = data.checkpoint(str(config), tmp_path / 'mobilenet.pth')
    _, text = tool('class_selectivity', config, '--checkpoint', ckpt,
                   '--label', 'm', '--out-dir', tmp_path)
    result = json.loads((tmp_path / 'selectivity.json').read_text())
    assert result['blocks']['m'] == ['backbone.layer7.0']
    assert result['selectivity']['m']['backbone.layer7.0'][
        'negative_activations'] is True
    assert 'warning: backbone.layer7.0 has negative mean activations' in text


def test_bad_input_is_a_clear_error(cls, tmp_path):
    config, ckpt = cls['baseline']
    code, text = tool('channel_diversity', config, '--checkpoint',
                      tmp_path / 'missing.pth', check=False)
    assert code == 2 and 'checkpoint not found:' in text and \
        'missing.pth' in text
    code, text = tool('channel_diversity', config, '--checkpoint', ckpt,
                      '--points', 'backbone.layer9', '--out-dir', tmp_path,
                      check=False)
    assert code == 1 and "no module named 'backbone.layer9'" in text
    code, text = tool('feature_importance', config, '--checkpoint', ckpt,
                      '--out-dir', tmp_path, check=False)
    assert code == 1 and 'the model has no gated block' in text and \
        'baseline.py' in text
    code, text = tool('channel_ablation', config, config, '--checkpoint',
                      ckpt, check=False)
    assert code == 2 and 'give one config or one per checkpoint' in text


@pytest.fixture(scope='module')
def quickstart_data(tmp_path_factory):
    pytest.importorskip('mmdet', reason='mmdet is not installed')
    pytest.importorskip('mmseg', reason='mmseg is not installed')
    out = tmp_path_factory.mktemp('analysis_det')
    generate(out, '--num-train', 2, '--num-val', 3, '--size', 160, 128,
             '--seed', 0, '--formats', 'voc')
    return out


@pytest.mark.parametrize('name', ['channel_diversity', 'inhibited_channels'])
@pytest.mark.parametrize('config', [
    'faster_rcnn_r50w16_c3_voc0712_synthetic.py',
    'deeplabv2_r50w8_c3_voc12_synthetic.py'
], ids=['detector', 'segmenter'])
def test_label_free_tools_on_detection_and_segmentation(
        quickstart_data, tmp_path, monkeypatch, config, name):
    monkeypatch.setenv('MMC3_QUICKSTART_DATA', str(quickstart_data))
    config = osp.join(data.QUICKSTART, config)
    ckpt = data.checkpoint(config, tmp_path / 'model.pth')
    code, text = run([sys.executable, osp.join(TOOLS, f'{name}.py'), config,
                      '--checkpoint', ckpt, '--num-images', '2',
                      '--label', 'model', '--out-dir', str(tmp_path)],
                     cwd=ROOT,
                     MMC3_QUICKSTART_DATA=str(quickstart_data))
    if name == 'channel_diversity':
        result = json.loads((tmp_path / 'diversity.json').read_text())
        values = result['diversity']['model']
        # the detector's stage 4 is the RoI head's, run on every RoI
        stage4 = 'roi_head.shared_head.layer4' if 'faster' in config \
            else 'backbone.layer4'
        assert stage4 in values
        assert any(p.startswith(stage4) and 'c3_block' in p for p in values)
        assert values['backbone.layer1']['n'] == 2
        if 'faster' in config:
            assert values[stage4]['n'] > 2  # one per RoI
        check_png(tmp_path / 'diversity.png')
    else:
        result = json.loads((tmp_path / 'inhibited.json').read_text())
        r = result['results']['model']
        assert 0 <= r['inhibited']['all'] <= 1
        assert 0 <= r['beta_nonpositive']['all'] <= 1
        check_png(tmp_path / 'inhibited.png')


def _cuda():
    import torch
    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason='needs CUDA (--device cuda)')
@pytest.mark.parametrize('name,out', [('class_activation_maps', 'cam.json'),
                                      ('channel_ablation', 'ablation.json'),
                                      ('feature_importance',
                                       'importance.json')])
def test_cuda_gives_the_cpu_numbers(cls, tmp_path, name, out):
    args = pair(cls) if name != 'feature_importance' else [
        cls['se'][0], '--checkpoint', cls['se'][1], '--label', 'se']
    results = {}
    for device in ('cpu', 'cuda'):
        tool(name, *args, '--device', device, '--out-dir', tmp_path / device)
        results[device] = json.loads((tmp_path / device / out).read_text())
    # float32 on another device may flip a near-tie: at most one image
    one_image = 100 / NUM_IMAGES + 1e-9
    if name == 'class_activation_maps':
        for label, r in results['cpu']['cam'].items():
            assert abs(r['top1'] - results['cuda']['cam'][label]['top1']) \
                <= one_image
    else:
        assert _numbers(results['cpu']['top1']) == pytest.approx(
            _numbers(results['cuda']['top1']), abs=one_image)


def _numbers(tree):
    """Every float of a JSON tree, in order."""
    if isinstance(tree, dict):
        return [v for k in sorted(tree) for v in _numbers(tree[k])]
    if isinstance(tree, list):
        return [v for item in tree for v in _numbers(item)]
    return [tree] if isinstance(tree, float) else []
