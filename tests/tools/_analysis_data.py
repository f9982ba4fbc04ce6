"""Tiny classifiers and image folders for the analysis tools' tests."""
import os
import os.path as osp

import numpy as np

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')


def image_folder(root, classes=3, per_class=4, size=32, seed=0) -> str:
    """``root/test/<class>/*.png``: class ``c`` is a bright square in the
    ``c``-th corner on noise, so the classes differ."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = osp.join(root, 'test', f'class{c}')
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            y, x = divmod(c % 4, 2)
            h = size // 2
            img[y * h:(y + 1) * h, x * h:(x + 1) * h] = 220
            Image.fromarray(img).save(osp.join(folder, f'{i}.png'))
    return str(root)


def config(path, variant, data_root, classes=3, batch_size=4) -> str:
    """A quickstart digits config (``variant``: baseline, c3, se) reading
    ``data_root/test`` with ``classes`` classes, written to ``path``."""
    text = f'''
_base_ = [{osp.join(QUICKSTART, f"resnet20_{variant}_digits.py")!r}]
data_preprocessor = dict(num_classes={classes})
model = dict(head=dict(num_classes={classes}))
test_dataloader = dict(batch_size={batch_size}, dataset=dict(
    data_root={str(data_root)!r}, data_prefix='test'))
'''
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def checkpoint(config_path, path, seed=0) -> str:
    """The config's model with seeded random weights, saved as an mmengine
    checkpoint."""
    import torch
    from mmengine.config import Config

    from mmc3.analysis.runs import load_model
    torch.manual_seed(seed)
    model = load_model(Config.fromfile(config_path))
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return str(path)
