"""check_dataset_paths names the first missing path and its config key."""
import re

from mmengine.config import Config, DictAction

from mmc3.utils import check_dataset_paths


def test_missing_ann_file_inside_concat_dataset(tmp_path):
    (tmp_path / 'VOC2007').mkdir()
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset',
        datasets=[dict(data_root=str(tmp_path), ann_file='VOC2007/trainval.txt',
                       data_prefix=dict(sub_data_root='VOC2007/'))]))))
    msg = check_dataset_paths(cfg)
    assert str(tmp_path / 'VOC2007/trainval.txt') in msg
    assert 'train_dataloader.dataset.datasets.0.ann_file' in msg
    (tmp_path / 'VOC2007' / 'trainval.txt').write_text('')
    assert check_dataset_paths(cfg) is None


def test_missing_data_root_and_unselected_loaders(tmp_path):
    missing = str(tmp_path / 'nowhere')
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(data_root=missing)),
        test_dataloader=dict(dataset=dict(data_root=str(tmp_path)))))
    assert missing in check_dataset_paths(cfg)
    assert check_dataset_paths(cfg, loaders=('test_dataloader', )) is None


def test_missing_path_inside_a_wrapper_dataset(tmp_path):
    """RepeatDataset / ClassBalancedDataset & co. hold the real dataset under
    ``dataset``: its paths are checked and named through the wrapper."""
    missing = str(tmp_path / 'absent')
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=3,
        dataset=dict(type='CocoDataset', data_root=missing,
                     ann_file='annotations/train.json')))))
    msg = check_dataset_paths(cfg)
    assert msg is not None
    assert f'{missing} (train_dataloader.dataset.dataset.data_root)' in msg


def test_the_suggested_cfg_option_fixes_the_path(tmp_path):
    """The key in the message is one that ``--cfg-options`` really sets:
    parsing ``KEY=good_path`` with mmengine's DictAction and merging it makes
    the check pass (a ``datasets[0]`` spelling would add a new key instead)."""
    good = tmp_path / 'good'
    good.mkdir()
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset',
        datasets=[dict(data_root=str(good)),
                  dict(data_root=str(tmp_path / 'missing'))]))))
    msg = check_dataset_paths(cfg)
    suggested = re.search(r'--cfg-options (\S+)=\.\.\.', msg).group(1)
    assert suggested == 'train_dataloader.dataset.datasets.1.data_root'
    namespace = type('Args', (), {})()
    DictAction(option_strings=[], dest='options')(
        None, namespace, [f'{suggested}={good}'])
    cfg.merge_from_dict(namespace.options)
    assert check_dataset_paths(cfg) is None
