"""check_dataset_paths names the first missing path and its config key."""
from mmengine.config import Config

from mmc3.utils import check_dataset_paths


def test_missing_ann_file_inside_concat_dataset(tmp_path):
    (tmp_path / 'VOC2007').mkdir()
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset',
        datasets=[dict(data_root=str(tmp_path), ann_file='VOC2007/trainval.txt',
                       data_prefix=dict(sub_data_root='VOC2007/'))]))))
    msg = check_dataset_paths(cfg)
    assert str(tmp_path / 'VOC2007/trainval.txt') in msg
    assert 'train_dataloader.dataset.datasets[0].ann_file' in msg
    (tmp_path / 'VOC2007' / 'trainval.txt').write_text('')
    assert check_dataset_paths(cfg) is None


def test_missing_data_root_and_unselected_loaders(tmp_path):
    missing = str(tmp_path / 'nowhere')
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(data_root=missing)),
        test_dataloader=dict(dataset=dict(data_root=str(tmp_path)))))
    assert missing in check_dataset_paths(cfg)
    assert check_dataset_paths(cfg, loaders=('test_dataloader', )) is None
