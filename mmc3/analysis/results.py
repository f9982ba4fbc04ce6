"""Runs' logs and results beside the papers' numbers.

mmengine writes, per run, ``<work_dir>/<timestamp>/vis_data/<timestamp>.json``
(one JSON object per logged step: training scalars with ``iter``/``step``,
validation metrics with ``step``), and ``tools/test.py`` writes the final
metrics to ``<work_dir>/<timestamp>/<timestamp>.json`` (one object). The
paper's numbers come from the model index (``model-index.yml``).
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Tuple

#: mmengine metric key -> (model-index metric, factor to the index's unit)
METRICS = {
    'coco/bbox_mAP': ('COCO box AP', 100.0),
    'pascal_voc/mAP': ('VOC mAP', 100.0),
    'mIoU': ('mIoU', 1.0),
    'mAcc': ('mAcc', 1.0),
    'accuracy/top1': ('top-1 acc (%)', 1.0),
}
#: ImageNet tables give errors: top-1 error = 100 - top-1 accuracy
ERRORS = {'top-1 err (%)': 'accuracy/top1', 'top-5 err (%)': 'accuracy/top5'}
_TRAIN_KEYS = {'lr', 'data_time', 'time', 'iter', 'epoch', 'step', 'memory'}


def read_log(path: str) -> List[dict]:
    """The JSON objects of an mmengine scalar log, one per line."""
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}:{number}: not a JSON object '
                                 f'({err.msg})') from err
    return records


def final_metrics(work_dir: str) -> Tuple[Dict[str, float], str]:
    """The metrics of a run: the newest test result below ``work_dir``
    (``<ts>/<ts>.json``), else the last validation step of the newest
    training log. Returns ``(metrics, file they came from)``."""
    tests = sorted(
        p for p in glob.glob(osp.join(work_dir, '**', '*.json'),
                             recursive=True)
        if osp.basename(osp.dirname(p)) == osp.splitext(osp.basename(p))[0]
        and 'vis_data' not in p)
    for path in reversed(tests):
        records = read_log(path)
        metrics = {k: v for k, v in records[-1].items()
                   if k not in _TRAIN_KEYS} if records else {}
        if metrics:
            return metrics, path
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', '*.json')))
    logs = [p for p in logs if osp.basename(p) != 'scalars.json']
    for path in reversed(logs):
        for record in reversed(read_log(path)):
            if 'loss' not in record and set(record) - _TRAIN_KEYS:
                return {k: v for k, v in record.items()
                        if k not in _TRAIN_KEYS}, path
    raise ValueError(f'{work_dir}: no test result (<timestamp>/<timestamp>'
                     '.json) and no validation step in a training log')


def config_name(work_dir: str) -> str:
    """The config a work dir ran: the ``.py`` file mmengine dumped into
    it (the name of the folder if there is none)."""
    dumped = sorted(glob.glob(osp.join(work_dir, '*.py')))
    if len(dumped) == 1:
        return osp.splitext(osp.basename(dumped[0]))[0]
    return osp.basename(osp.normpath(work_dir))


def model_index(root: str) -> Dict[str, dict]:
    """``{config name: model-index entry}`` of ``root/model-index.yml``."""
    import yaml
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    entries = {}
    for path in index['Import']:
        with open(osp.join(root, path)) as f:
            for entry in yaml.safe_load(f)['Models']:
                entries[entry['Name']] = entry
    return entries


def paper_value(entry: Optional[dict], metric: str) -> Optional[float]:
    """The paper's number for one of our metric keys, in the index's
    unit (first source that gives it), or None."""
    for result in (entry or {}).get('Results', []):
        for name, value in result['Metrics'].items():
            if METRICS.get(metric, (None, ))[0] == name:
                return float(value)
            if ERRORS.get(name) == metric:
                return 100.0 - float(value)  # as an accuracy
    return None


def ours(metric: str, value: float) -> float:
    """One of our metric values in the model index's unit."""
    return float(value) * METRICS.get(metric, (None, 1.0))[1]


def baseline_of(name: str) -> Optional[str]:
    """The baseline config of a block config (``_c3_`` -> ``_baseline_``),
    or None for a baseline."""
    parts = name.split('_')
    for block in ('c3', 'se', 'ce', 'ge', 'convs'):
        if block in parts:
            i = parts.index(block)
            rest = parts[i + 1:]
            # block variants (c3_k4, c3_encdec, ge_e4_avg) share the baseline
            while rest and not rest[0].startswith(
                    ('coco', 'voc', 'cifar', 'in1k', 'digits', 'synthetic')):
                rest = rest[1:]
            return '_'.join(parts[:i] + ['baseline'] + rest)
    return None
