"""Write (or --check) model-index.yml and configs/metafiles/*.yml, the
OpenMMLab model index of every config in configs/.

One metafile per family (detection, instance segmentation, semantic
segmentation, classification, quickstart). Each entry: the config's paper
(collection), task, dataset, the metrics the seeds give for it (value, unit
in the metric's name, and the seed table and row it comes from; none where
the seeds give none), training resources from the config's header ("Set for
N GPUs x B images"), and empty Weights (nothing is trained to completion
here).

Config paths in the index are the packaged ones, `configs/<family>/NAME.py`:
mmengine 0.10.7 only resolves `mmc3::<folder>/<file>` (a path with a
folder), so the built package (setup.py) places every config in its
family's folder, `_base_/` beside them. In the clone they stay flat in
configs/ (`configs/quickstart/` keeps its folder).

    python tools/misc/model_index.py          # write
    python tools/misc/model_index.py --check  # exit 1 if the files differ
"""
import argparse
import glob
import os
import os.path as osp
import re
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

# config name prefix -> (folder in the package, task, metafile)
FAMILIES = (
    ('faster_rcnn_', 'detection', 'Object Detection', 'detection'),
    ('mask_rcnn_', 'detection', 'Instance Segmentation',
     'instance_segmentation'),
    ('deeplabv2_', 'segmentation', 'Semantic Segmentation',
     'semantic_segmentation'),
    ('', 'classification', 'Image Classification', 'classification'),
)
DATASETS = (('_coco', 'COCO'), ('_voc0712', 'Pascal VOC 2007+2012'),
            ('_voc12aug', 'Pascal VOC 2012 + SBD'), ('_cifar100', 'CIFAR-100'),
            ('_in1k', 'ImageNet-1k'), ('_digits', 'scikit-learn digits'),
            ('_synthetic', 'synthetic shapes (tools/misc/'
             'generate_synthetic_data.py)'))
_C3 = ('C3', 'Cross-channel Communication Networks (NeurIPS 2019)',
       'https://github.com/jwyang/C3Net.pytorch')
COLLECTIONS = {
    'baseline': ('Baseline', 'the host network without blocks', None),
    'c3': _C3,
    'convs': _C3,  # the C3 paper's "+Convs" control
    'se': ('SE', 'Squeeze-and-Excitation Networks',
           'https://arxiv.org/abs/1709.01507'),
    'ce': ('CE', 'Channel Equilibrium Networks for Learning Deep '
           'Representation', 'https://arxiv.org/abs/2003.00214'),
    'ge': ('GE', 'Gather-Excite: Exploiting Feature Context in CNNs',
           'https://arxiv.org/abs/1810.12348'),
}
_DET = 'seed 002 detection table'
_SEG = 'seed 002 segmentation table'
#: detection / segmentation numbers of the seeds (seed 001 Table 3 prints
#: the same values): config -> [(metric, value, source)]
DETSEG = {
    'faster_rcnn_r101_baseline': [('COCO box AP', 33.9, f'{_DET}, FRCNN')],
    'faster_rcnn_r101_se': [('COCO box AP', 34.3, f'{_DET}, FRCNN + SE')],
    'faster_rcnn_r101_c3': [('COCO box AP', 34.8, f'{_DET}, FRCNN + C3')],
    'faster_rcnn_r101_baseline_voc0712': [
        ('VOC mAP', 74.6, f'{_DET}, FRCNN')],
    'faster_rcnn_r101_se_voc0712': [('VOC mAP', 74.8, f'{_DET}, FRCNN + SE')],
    'faster_rcnn_r101_c3_voc0712': [('VOC mAP', 75.6, f'{_DET}, FRCNN + C3')],
    'deeplabv2_r101_baseline_voc12aug': [
        ('mIoU', 75.2, f'{_SEG}, Deeplabv2'),
        ('mAcc', 85.3, f'{_SEG}, Deeplabv2')],
    'deeplabv2_r101_se_voc12aug': [
        ('mIoU', 75.6, f'{_SEG}, Deeplabv2 + SE'),
        ('mAcc', 85.6, f'{_SEG}, Deeplabv2 + SE')],
    'deeplabv2_r101_c3_voc12aug': [
        ('mIoU', 75.7, f'{_SEG}, Deeplabv2 + C3'),
        ('mAcc', 86.0, f'{_SEG}, Deeplabv2 + C3')],
}
_RESOURCES = re.compile(
    r'^# (?:Set for|Run on) (\d+) GPUs?(?:,| x) (\d+) images?', re.M)


def config_files():
    """Repository-relative paths of every config (not the _base_ parts)."""
    paths = glob.glob(osp.join(ROOT, 'configs', '*.py')) + \
        glob.glob(osp.join(ROOT, 'configs', 'quickstart', '*.py'))
    return sorted(osp.relpath(p, ROOT) for p in paths)


def family(path):
    """(package folder, task, metafile) of a repository config path."""
    name = osp.basename(path)
    for prefix, folder, task, metafile in FAMILIES:
        if name.startswith(prefix):
            if path.startswith(osp.join('configs', 'quickstart')):
                return 'quickstart', task, 'quickstart'
            return folder, task, metafile
    raise AssertionError(name)


def package_path(path):
    """The config's path inside the built package's .mim folder."""
    folder = family(path)[0]
    return f'configs/{folder}/{osp.basename(path)}'


def entry(path):
    from mmc3.analysis.seed_tables import rows_by_config
    name = osp.splitext(osp.basename(path))[0]
    folder, task, _ = family(path)
    block = next((b for b in COLLECTIONS if f'_{b}_' in f'_{name}_'),
                 'baseline')
    # the COCO detection configs carry no dataset suffix
    dataset = next((d for suffix, d in DATASETS if suffix in name), 'COCO')
    with open(osp.join(ROOT, path)) as f:
        header = f.read()
    meta = {}
    found = _RESOURCES.search(header)
    if found:
        gpus, images = map(int, found.groups())
        meta['Training Resources'] = \
            f'{gpus}x GPU, {images} images per GPU'
    elif 'quickstart' in path:
        meta['Training Resources'] = '2 CPU processes (tools/quickstart.sh)'
    results = []
    for metric, value, source in DETSEG.get(name, []):
        results.append(dict(Task=task, Dataset=dataset,
                            Metrics={metric: value}, Source=source))
    for row in rows_by_config().get(name, []):
        if row.metric:
            results.append(dict(
                Task=task, Dataset=dataset,
                Metrics={f'{m} (%)': v for m, v in row.metric},
                Source=f'seed {row.table}, row "{row.row}"'))
    out = {'Name': name, 'In Collection': COLLECTIONS[block][0],
           'Config': package_path(path), 'Metadata': meta}
    if results:
        out['Results'] = results
    out['Weights'] = ''
    return out


def dump(metafile_entries):
    """Metafile text: collections used, then models (YAML, written by hand
    so the output is stable and diff-friendly)."""
    import yaml
    used = []
    for e in metafile_entries:
        if e['In Collection'] not in used:
            used.append(e['In Collection'])
    papers = {c: (t, u) for c, t, u in COLLECTIONS.values()}
    collections = []
    for name in used:
        title, url = papers[name]
        item = {'Name': name, 'Paper': {'Title': title}}
        if url:
            item['Paper']['URL'] = url
        collections.append(item)
    return yaml.safe_dump({'Collections': collections,
                           'Models': metafile_entries},
                          sort_keys=False, width=100)


def expected_files():
    """{repository path: text} of the metafiles and model-index.yml."""
    groups = {}
    for path in config_files():
        groups.setdefault(family(path)[2], []).append(entry(path))
    files = {}
    for metafile, entries in sorted(groups.items()):
        files[f'configs/metafiles/{metafile}.yml'] = dump(entries)
    files['model-index.yml'] = 'Import:\n' + ''.join(
        f'  - {p}\n' for p in files)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='compare instead of writing; exit 1 if stale')
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        full = osp.join(ROOT, path)
        current = open(full).read() if osp.isfile(full) else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            os.makedirs(osp.dirname(full) or ROOT, exist_ok=True)
            with open(full, 'w') as f:
                f.write(text)
            print(f'wrote {path}')
    if args.check and stale:
        print('stale (run python tools/misc/model_index.py): '
              + ', '.join(stale))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
