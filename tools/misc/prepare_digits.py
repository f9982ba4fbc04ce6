"""Write scikit-learn's handwritten digits as an image-folder dataset that
mmpretrain's ``CustomDataset`` reads (the quickstart's classification data).

    python tools/misc/prepare_digits.py --out work_dirs/quickstart/data/digits

``sklearn.datasets.load_digits`` is real data shipped inside the
scikit-learn wheel (1,797 handwritten digits, 8x8 pixels with values 0-16,
10 classes; no download). Each image is scaled to 0-255, upsampled to
32x32 (bicubic) and saved as an RGB PNG in ``<out>/<split>/<class>/``.
The split is fixed and stratified: within every class, every fifth image
(in the dataset's order) is held out for ``test``, the rest is ``train``
(1,442 / 355 images). mmpretrain's CIFAR loader cannot be used honestly:
it checks the md5 of the official CIFAR archives. ``--check`` verifies an
existing folder instead of writing one.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict

import numpy as np

SIZE = 32
HOLD_OUT_EVERY = 5


def split_indices(labels: np.ndarray) -> Dict[str, np.ndarray]:
    """Stratified fixed split: the 5th, 10th, ... image of each class is
    held out."""
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test[members[HOLD_OUT_EVERY - 1::HOLD_OUT_EVERY]] = True
    return dict(train=np.flatnonzero(~test), test=np.flatnonzero(test))


def to_image(pixels: np.ndarray):
    """8x8 values 0-16 -> a 32x32 RGB PIL image."""
    from PIL import Image
    gray = np.clip(np.round(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    image = Image.fromarray(gray).resize((SIZE, SIZE),
                                                   Image.BICUBIC)
    return image.convert('RGB')


def write(out: str) -> Dict[str, int]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    counts = {}
    for split, indices in split_indices(digits.target).items():
        for i in indices:
            folder = osp.join(out, split, str(int(digits.target[i])))
            os.makedirs(folder, exist_ok=True)
            to_image(digits.images[i]).save(osp.join(folder, f'{i:04d}.png'))
        counts[split] = len(indices)
    return counts


def check(out: str) -> Dict[str, int]:
    """Image counts per split of an existing folder (raises if absent)."""
    counts = {}
    for split in ('train', 'test'):
        root = osp.join(out, split)
        if not osp.isdir(root):
            raise FileNotFoundError(f'{root} does not exist: run '
                                    f'prepare_digits.py --out {out}')
        counts[split] = sum(len(files) for _, _, files in os.walk(root))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--check', action='store_true',
                        help='count the images of an existing folder')
    args = parser.parse_args(argv)
    counts = check(args.out) if args.check else write(args.out)
    print(' '.join(f'{k}={v}' for k, v in counts.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
