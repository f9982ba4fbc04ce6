"""Generate a small synthetic detection / segmentation dataset of coloured shapes.

Every image shows 1 to ``--max-objects`` non-overlapping shapes on a noisy
gradient background. Each class has its own shape and colour, with jitter:

    car     rectangle  red
    person  ellipse    green
    dog     triangle   blue

The class names are Pascal VOC names, so the files load with the upstream
datasets unchanged. The annotations are written in the real formats:

    OUT/coco/annotations/instances_{train,val}.json   COCO: bbox [x, y, w, h],
    OUT/coco/{train,val}/*.jpg                        polygon segmentation,
                                                      area, iscrowd, categories
    OUT/VOCdevkit/VOC<year>/JPEGImages/*.jpg          Pascal VOC
    OUT/VOCdevkit/VOC<year>/Annotations/*.xml         (boxes 1-based, inclusive)
    OUT/VOCdevkit/VOC<year>/ImageSets/Main/{train,val,trainval,test}.txt
    OUT/VOCdevkit/VOC<year>/ImageSets/Segmentation/{train,val,trainval,aug}.txt
    OUT/VOCdevkit/VOC<year>/SegmentationClass/*.png   palette PNG, VOC palette,
                                                      VOC class indices
    OUT/VOCdevkit/VOC<year>/SegmentationClassAug/*.png  the same labels as
                                                      single-channel PNGs

``test.txt`` lists the validation images. Each format and each VOC year gets
its own images (``--num-train`` + ``--num-val`` each); the output depends only
on the arguments, so the same ``--seed`` gives byte-identical files.

Example:
    python tools/misc/generate_synthetic_data.py --out data/synthetic \\
        --num-train 200 --num-val 50 --size 160 128 --seed 0
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence, Tuple
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

#: The 20 Pascal VOC classes; a class's label in SegmentationClass is its
#: position here + 1 (0 is background, 255 is "void").
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
               'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')

#: (name, shape, RGB colour, COCO supercategory) of the generated classes.
CLASSES: Tuple[Tuple[str, str, Tuple[int, int, int], str], ...] = (
    ('car', 'rectangle', (220, 40, 40), 'vehicle'),
    ('person', 'ellipse', (40, 170, 60), 'person'),
    ('dog', 'triangle', (50, 80, 220), 'animal'),
)
CLASS_NAMES = tuple(c[0] for c in CLASSES)
SPLITS = ('train', 'val')
# Independent random streams, so adding a format never changes another's data.
_STREAMS = {'coco': 1, 'voc2007': 2007, 'voc2012': 2012}


def voc_palette() -> List[int]:
    """The 256-entry Pascal VOC colour map, flattened ``[r0, g0, b0, r1, ...]``.

    Colour ``i`` spreads the bits of ``i`` over the high bits of r, g, b
    (bit 0 -> red, bit 1 -> green, bit 2 -> blue, then the next three bits
    one position lower, ...), as in the VOC development kit.
    """
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _shape_polygon(shape: str, x: float, y: float, w: float, h: float,
                   rng: np.random.Generator) -> List[Tuple[float, float]]:
    """Vertices of a shape inscribed in the box ``(x, y, w, h)``."""
    if shape == 'rectangle':
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    if shape == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        cx, cy = x + w / 2, y + h / 2
        return [(float(cx + w / 2 * np.cos(a)), float(cy + h / 2 * np.sin(a)))
                for a in t]
    if shape == 'triangle':
        apex = x + w * float(rng.uniform(0.2, 0.8))
        return [(apex, y), (x + w, y + h), (x, y + h)]
    raise ValueError(f'unknown shape {shape!r}')


def make_scene(rng: np.random.Generator, width: int, height: int,
               max_objects: int) -> Tuple[np.ndarray, List[Dict]]:
    """Draw one image and its objects.

    Returns:
        tuple: the ``(height, width, 3)`` uint8 image and a list of objects,
        each ``dict(label, polygon, mask, box)`` with ``label`` an index into
        :data:`CLASSES`, ``mask`` a bool ``(height, width)`` array and
        ``box = (x0, y0, x1, y1)`` the inclusive pixel extent of the mask.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    c0 = rng.uniform(140, 235, size=3)
    c1 = rng.uniform(140, 235, size=3)
    ramp = (xx / max(width - 1, 1)) if rng.random() < 0.5 else (
        yy / max(height - 1, 1))
    image = c0 + (c1 - c0) * ramp[..., None]
    image += rng.normal(0, 6, size=image.shape)

    objects: List[Dict] = []
    taken: List[Tuple[float, float, float, float]] = []
    short = min(width, height)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASSES)))
        _, shape, colour, _ = CLASSES[label]
        for _attempt in range(30):
            w = float(rng.uniform(0.18, 0.45)) * short
            h = float(np.clip(w * rng.uniform(0.6, 1.6), 0.15 * short,
                              0.6 * height))
            x = float(rng.uniform(1, width - w - 2))
            y = float(rng.uniform(1, height - h - 2))
            margin = 3
            if all(x + w + margin < ox or ox + ow + margin < x
                   or y + h + margin < oy or oy + oh + margin < y
                   for ox, oy, ow, oh in taken):
                break
        else:
            continue  # no free place left in this image
        taken.append((x, y, w, h))
        polygon = _shape_polygon(shape, x, y, w, h, rng)
        canvas = Image.new('L', (width, height), 0)
        ImageDraw.Draw(canvas).polygon(polygon, fill=1)
        mask = np.asarray(canvas, dtype=bool)
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        fill = np.clip(np.array(colour) + rng.uniform(-25, 25, size=3), 0,
                       255)
        image[mask] = fill + rng.normal(0, 6, size=(int(mask.sum()), 3))
        objects.append(
            dict(label=label, polygon=polygon, mask=mask,
                 box=(int(xs.min()), int(ys.min()), int(xs.max()),
                      int(ys.max()))))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _scenes(seed: int, stream: str, num: Dict[str, int], width: int,
            height: int, max_objects: int):
    """Yield ``(split, index, image, objects)``, indices numbered across splits."""
    index = 0
    for split in SPLITS:
        for _ in range(num[split]):
            rng = np.random.default_rng([seed, _STREAMS[stream], index])
            image, objects = make_scene(rng, width, height, max_objects)
            yield split, index, image, objects
            index += 1


def _save_jpeg(image: np.ndarray, path: str) -> None:
    Image.fromarray(image).save(path, quality=95)


def write_coco(out: str, seed: int, num: Dict[str, int], width: int,
               height: int, max_objects: int) -> Dict[str, int]:
    """Write ``out/coco``; return the number of instances per split."""
    root = osp.join(out, 'coco')
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory=sup)
        for i, (name, _, _, sup) in enumerate(CLASSES)
    ]
    docs = {
        split: dict(info=dict(description='mmc3 synthetic shapes',
                              version='1.0'),
                    licenses=[], images=[], annotations=[],
                    categories=categories)
        for split in SPLITS
    }
    ann_id = 0
    for split, index, image, objects in _scenes(seed, 'coco', num, width,
                                                height, max_objects):
        os.makedirs(osp.join(root, split), exist_ok=True)
        file_name = f'{index + 1:06d}.jpg'
        _save_jpeg(image, osp.join(root, split, file_name))
        image_id = index + 1
        docs[split]['images'].append(
            dict(id=image_id, file_name=file_name, width=width,
                 height=height))
        for obj in objects:
            ann_id += 1
            x0, y0, x1, y1 = obj['box']
            polygon = [round(v, 2) for point in obj['polygon'] for v in point]
            docs[split]['annotations'].append(
                dict(id=ann_id, image_id=image_id,
                     category_id=obj['label'] + 1,
                     bbox=[x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                     area=int(obj['mask'].sum()),
                     segmentation=[polygon], iscrowd=0))
    counts = {}
    for split, doc in docs.items():
        with open(osp.join(root, 'annotations', f'instances_{split}.json'),
                  'w') as f:
            json.dump(doc, f)
        counts[split] = len(doc['annotations'])
    return counts


def _voc_xml(folder: str, file_name: str, width: int, height: int,
             objects: Sequence[Dict]) -> ET.ElementTree:
    ann = ET.Element('annotation')
    ET.SubElement(ann, 'folder').text = folder
    ET.SubElement(ann, 'filename').text = file_name
    source = ET.SubElement(ann, 'source')
    ET.SubElement(source, 'database').text = 'mmc3 synthetic shapes'
    ET.SubElement(source, 'annotation').text = 'PASCAL VOC format'
    size = ET.SubElement(ann, 'size')
    ET.SubElement(size, 'width').text = str(width)
    ET.SubElement(size, 'height').text = str(height)
    ET.SubElement(size, 'depth').text = '3'
    ET.SubElement(ann, 'segmented').text = '1'
    for obj in objects:
        node = ET.SubElement(ann, 'object')
        ET.SubElement(node, 'name').text = CLASSES[obj['label']][0]
        ET.SubElement(node, 'pose').text = 'Unspecified'
        ET.SubElement(node, 'truncated').text = '0'
        ET.SubElement(node, 'difficult').text = '0'
        box = ET.SubElement(node, 'bndbox')
        x0, y0, x1, y1 = obj['box']  # VOC: 1-based, inclusive
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'),
                              (x0 + 1, y0 + 1, x1 + 1, y1 + 1)):
            ET.SubElement(box, tag).text = str(value)
    tree = ET.ElementTree(ann)
    ET.indent(tree)
    return tree


def write_voc(out: str, year: str, seed: int, num: Dict[str, int], width: int,
              height: int, max_objects: int,
              seg_border: int) -> Dict[str, int]:
    """Write ``out/VOCdevkit/VOC<year>``; return the number of images per split."""
    root = osp.join(out, 'VOCdevkit', f'VOC{year}')
    dirs = ('JPEGImages', 'Annotations', 'ImageSets/Main',
            'ImageSets/Segmentation', 'SegmentationClass',
            'SegmentationClassAug')
    for d in dirs:
        os.makedirs(osp.join(root, d), exist_ok=True)
    palette = voc_palette()
    ids: Dict[str, List[str]] = {split: [] for split in SPLITS}
    for split, index, image, objects in _scenes(seed, f'voc{year}', num,
                                                width, height, max_objects):
        image_id = f'{year}_{index + 1:06d}'
        ids[split].append(image_id)
        _save_jpeg(image, osp.join(root, 'JPEGImages', image_id + '.jpg'))
        _voc_xml(f'VOC{year}', image_id + '.jpg', width, height,
                 objects).write(osp.join(root, 'Annotations',
                                         image_id + '.xml'))
        label = np.zeros((height, width), dtype=np.uint8)
        for obj in objects:
            label[obj['mask']] = VOC_CLASSES.index(CLASSES[obj['label']][0]) + 1
        if seg_border > 0:  # VOC marks object outlines as void (255)
            canvas = Image.fromarray(label)
            draw = ImageDraw.Draw(canvas)
            for obj in objects:
                draw.line(obj['polygon'] + obj['polygon'][:1], fill=255,
                          width=seg_border)
            label = np.asarray(canvas)
        png = Image.fromarray(label).convert('P')  # uint8 (H, W): mode L
        png.putpalette(palette)
        png.save(osp.join(root, 'SegmentationClass', image_id + '.png'))
        Image.fromarray(label).save(
            osp.join(root, 'SegmentationClassAug', image_id + '.png'))
    lists = dict(train=ids['train'], val=ids['val'],
                 trainval=ids['train'] + ids['val'], test=ids['val'])
    for name, items in lists.items():
        with open(osp.join(root, 'ImageSets', 'Main', name + '.txt'), 'w') as f:
            f.write(''.join(i + '\n' for i in items))
    seg_lists = dict(train=ids['train'], val=ids['val'],
                     trainval=ids['train'] + ids['val'], aug=ids['train'])
    for name, items in seg_lists.items():
        with open(osp.join(root, 'ImageSets', 'Segmentation', name + '.txt'),
                  'w') as f:
            f.write(''.join(i + '\n' for i in items))
    return {split: len(v) for split, v in ids.items()}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate a synthetic shapes dataset in COCO and Pascal '
        'VOC formats (boxes, instance polygons, semantic label PNGs).')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--num-train', type=int, default=100,
                        help='training images per format / VOC year')
    parser.add_argument('--num-val', type=int, default=25,
                        help='validation images per format / VOC year')
    parser.add_argument('--size', type=int, nargs=2, default=(160, 128),
                        metavar=('W', 'H'), help='image width and height')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--formats', nargs='+', default=['coco', 'voc'],
                        choices=['coco', 'voc'], help='formats to write')
    parser.add_argument('--voc-years', nargs='+', default=['2007', '2012'],
                        choices=['2007', '2012'],
                        help='VOCdevkit sub-directories to write')
    parser.add_argument('--max-objects', type=int, default=3,
                        help='at most this many shapes per image')
    parser.add_argument('--seg-border', type=int, default=0,
                        help='width in pixels of the void (255) outline drawn '
                        'around objects in the VOC label PNGs (0: none)')
    args = parser.parse_args(argv)
    width, height = args.size
    if width < 32 or height < 32:
        parser.error(f'--size must be at least 32 32, got {width} {height}')
    if args.num_train < 1 or args.num_val < 1:
        parser.error('--num-train and --num-val must be >= 1, got '
                     f'{args.num_train} and {args.num_val}')
    if args.max_objects < 1:
        parser.error(f'--max-objects must be >= 1, got {args.max_objects}')
    if args.seg_border < 0:
        parser.error(f'--seg-border must be >= 0, got {args.seg_border}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    width, height = args.size
    num = dict(train=args.num_train, val=args.num_val)
    if 'coco' in args.formats:
        counts = write_coco(args.out, args.seed, num, width, height,
                            args.max_objects)
        print(f'coco: {num["train"]} train / {num["val"]} val images, '
              f'{counts["train"]} / {counts["val"]} instances -> '
              f'{osp.join(args.out, "coco")}')
    if 'voc' in args.formats:
        for year in args.voc_years:
            counts = write_voc(args.out, year, args.seed, num, width, height,
                               args.max_objects, args.seg_border)
            print(f'VOC{year}: {counts["train"]} train / {counts["val"]} val '
                  'images -> '
                  f'{osp.join(args.out, "VOCdevkit", "VOC" + year)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
