"""tools/misc/prepare_digits.py: a fixed stratified split of sklearn's real
digits, written as a folder mmpretrain's CustomDataset reads."""
import os.path as osp
import sys

import numpy as np

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..',
                            'tools', 'misc'))
import prepare_digits  # noqa: E402


def test_split_is_stratified_fixed_and_disjoint():
    labels = np.repeat(np.arange(3), [10, 7, 5])
    split = prepare_digits.split_indices(labels)
    assert not set(split['train']) & set(split['test'])
    assert len(split['train']) + len(split['test']) == len(labels)
    # every 5th image of each class: 2 + 1 + 1 held out
    assert list(split['test']) == [4, 9, 14, 21]


def test_written_folder_reads_with_custom_dataset(tmp_path):
    out = tmp_path / 'digits'
    counts = prepare_digits.write(str(out))
    assert counts == dict(train=1442, test=355)
    assert prepare_digits.check(str(out)) == counts
    from mmpretrain.datasets import CustomDataset
    test = CustomDataset(data_root=str(out), data_prefix='test',
                         pipeline=[dict(type='LoadImageFromFile')])
    assert len(test) == 355 and len(test.CLASSES) == 10
    image = test[0]['img']
    assert image.shape == (32, 32, 3) and image.max() > 200
