"""tools/misc/generate_synthetic_data.py: real COCO / VOC files, loadable upstream."""
import hashlib
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from ._run import generate

W, H = 96, 80
VOC_PALETTE_HEAD = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp('synthetic')
    log = generate(out, '--num-train', 6, '--num-val', 3, '--size', W, H,
                   '--seed', 3, '--seg-border', 1)
    assert 'coco: 6 train / 3 val images' in log
    return out


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_with_seed(data, tmp_path):
    generate(tmp_path / 'again', '--num-train', 6, '--num-val', 3, '--size', W,
             H, '--seed', 3, '--seg-border', 1)
    generate(tmp_path / 'other', '--num-train', 6, '--num-val', 3, '--size', W,
             H, '--seed', 4, '--seg-border', 1)
    assert _digest(data) == _digest(tmp_path / 'again')
    assert _digest(data) != _digest(tmp_path / 'other')


def test_coco_schema_and_masks_match_boxes(data):
    from pycocotools.coco import COCO
    ann_file = data / 'coco' / 'annotations' / 'instances_train.json'
    doc = json.loads(ann_file.read_text())
    assert [c['name'] for c in doc['categories']] == ['car', 'person', 'dog']
    coco = COCO(str(ann_file))
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds()) >= 6
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann['iscrowd'] == 0 and ann['segmentation'][0]
        img = coco.loadImgs(ann['image_id'])[0]
        assert (img['width'], img['height']) == (W, H)
        assert (data / 'coco' / 'train' / img['file_name']).is_file()
        mask = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        # the polygon rasterised by pycocotools fills the box (1 px slack)
        assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
        assert abs(xs.max() + 1 - (x + w)) <= 1
        assert abs(ys.max() + 1 - (y + h)) <= 1
        assert abs(int(mask.sum()) - ann['area']) <= 0.2 * ann['area']


def test_voc_layout_xml_and_palette_png(data):
    voc = data / 'VOCdevkit' / 'VOC2007'
    main = voc / 'ImageSets' / 'Main'
    train = main.joinpath('train.txt').read_text().split()
    val = main.joinpath('val.txt').read_text().split()
    assert len(train) == 6 and len(val) == 3
    assert main.joinpath('trainval.txt').read_text().split() == train + val
    assert main.joinpath('test.txt').read_text().split() == val
    seg_sets = voc / 'ImageSets' / 'Segmentation'
    assert seg_sets.joinpath('val.txt').read_text().split() == val
    voc_classes = ('car', 7), ('person', 15), ('dog', 12)
    for image_id in train:
        root = ET.parse(voc / 'Annotations' / f'{image_id}.xml').getroot()
        assert root.find('size/width').text == str(W)
        png = Image.open(voc / 'SegmentationClass' / f'{image_id}.png')
        assert png.mode == 'P'
        assert png.getpalette()[:12] == VOC_PALETTE_HEAD
        label = np.asarray(png)
        assert set(np.unique(label)) <= {0, 7, 12, 15, 255}
        for obj in root.findall('object'):
            name = obj.find('name').text
            index = dict(voc_classes)[name]
            box = [int(obj.find(f'bndbox/{k}').text)
                   for k in ('xmin', 'ymin', 'xmax', 'ymax')]
            assert 1 <= box[0] < box[2] <= W and 1 <= box[1] < box[3] <= H
            x0, y0, x1, y1 = (v - 1 for v in box)
            inside = label[y0:y1 + 1, x0:x1 + 1]
            # the object's label fills much of its box and never leaves it
            assert (inside == index).mean() > 0.3
        assert Image.open(voc / 'JPEGImages' / f'{image_id}.jpg').size == (W, H)
    assert (data / 'VOCdevkit' / 'VOC2012' / 'SegmentationClassAug').is_dir()


def test_upstream_datasets_load_it(data):
    from mmdet.datasets import CocoDataset, VOCDataset
    from mmseg.datasets import PascalVOCDataset
    coco = CocoDataset(data_root=str(data / 'coco'),
                       ann_file='annotations/instances_val.json',
                       data_prefix=dict(img='val/'),
                       metainfo=dict(classes=('car', 'person', 'dog')),
                       pipeline=[], test_mode=True)
    assert len(coco) == 3 and coco[0]['instances']
    voc = VOCDataset(data_root=str(data / 'VOCdevkit'),
                     ann_file='VOC2007/ImageSets/Main/test.txt',
                     data_prefix=dict(sub_data_root='VOC2007/'),
                     pipeline=[], test_mode=True)
    assert len(voc) == 3
    labels = {i['bbox_label'] for d in range(3) for i in voc[d]['instances']}
    assert labels <= {6, 11, 14}  # car, dog, person among the 20 classes
    seg = PascalVOCDataset(data_root=str(data / 'VOCdevkit' / 'VOC2012'),
                           data_prefix=dict(img_path='JPEGImages',
                                            seg_map_path='SegmentationClass'),
                           ann_file='ImageSets/Segmentation/val.txt',
                           pipeline=[])
    assert len(seg) == 3 and seg[0]['seg_map_path'].endswith('.png')


def _boxes_from_pixels(image: np.ndarray):
    """Objects found in a generated JPEG without reading any annotation.

    The backgrounds are pale (every channel >= 140) and each class has a
    saturated colour (car red, person green, dog blue), and objects never
    touch: so the object pixels are those with a dark channel, each
    4-connected component is one object, its dominant channel is its class.
    Returns ``(boxes, labels)`` with VOC labels (car 6, person 14, dog 11)
    and ``(x0, y0, x1, y1)`` boxes in pixel-edge coordinates.
    """
    rgb = image.astype(np.int32)
    fg = rgb.min(axis=2) < 110
    seen = np.zeros_like(fg)
    boxes, labels = [], []
    voc_label = {0: 6, 1: 14, 2: 11}  # dominant channel R, G, B
    for y0, x0 in zip(*np.nonzero(fg)):
        if seen[y0, x0]:
            continue
        stack, pixels = [(y0, x0)], []
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if (0 <= ny < fg.shape[0] and 0 <= nx < fg.shape[1]
                        and fg[ny, nx] and not seen[ny, nx]):
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(pixels) < 12:  # JPEG speckle
            continue
        ys, xs = np.array(pixels).T
        channel = int(np.argmax(rgb[ys, xs].mean(axis=0)))
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(voc_label[channel])
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(labels)


def test_annotations_describe_the_images(data):
    """Objects found in the JPEG pixels alone, scored against the generated
    VOC annotations by the upstream VOCMetric, reach mAP 1 (IoU >= 0.5 and
    the right class for every object, nothing extra): the boxes and labels
    written to the XML files are where and what the drawn shapes are. The
    same pixel boxes with the classes rotated score 0."""
    import torch
    from mmdet.datasets import VOCDataset
    from mmdet.evaluation import VOCMetric
    voc = VOCDataset(data_root=str(data / 'VOCdevkit'),
                     ann_file='VOC2007/ImageSets/Main/test.txt',
                     data_prefix=dict(sub_data_root='VOC2007/'),
                     pipeline=[], test_mode=True)
    results = {}
    for rotate in (False, True):
        metric = VOCMetric(iou_thrs=0.5)
        metric.dataset_meta = voc.metainfo
        for i in range(len(voc)):
            item = voc[i]
            gt_boxes = np.array([o['bbox'] for o in item['instances']],
                                np.float32)
            gt_labels = np.array([o['bbox_label'] for o in item['instances']])
            image = np.asarray(Image.open(item['img_path']).convert('RGB'))
            boxes, labels = _boxes_from_pixels(image)
            assert len(boxes) == len(gt_boxes), item['img_path']
            if rotate:
                labels = np.array([{6: 14, 14: 11, 11: 6}[v] for v in labels])
            sample = dict(
                gt_instances=dict(bboxes=torch.from_numpy(gt_boxes),
                                  labels=torch.from_numpy(gt_labels)),
                ignored_instances=dict(
                    bboxes=torch.zeros(0, 4),
                    labels=torch.zeros(0, dtype=torch.long)),
                pred_instances=dict(bboxes=torch.from_numpy(boxes),
                                    scores=torch.ones(len(boxes)),
                                    labels=torch.from_numpy(labels)),
                img_id=item['img_id'], width=item['width'],
                height=item['height'])
            metric.process({}, [sample])
        results[rotate] = metric.evaluate(len(voc))['pascal_voc/mAP']
    assert results[False] == pytest.approx(1.0)
    assert results[True] == pytest.approx(0.0)
