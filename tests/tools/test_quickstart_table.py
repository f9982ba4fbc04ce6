"""The quickstart table reads the metric that the test run logged."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_table_module():
    spec = importlib.util.spec_from_file_location(
        'quickstart_table', ROOT / 'tools' / 'misc' / 'quickstart_table.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_read_metric_newest_run_and_interleaved_ranks(tmp_path):
    table = load_table_module()
    old = tmp_path / '20260101_000000'
    new = tmp_path / '20260102_000000'
    old.mkdir()
    new.mkdir()
    (old / 'a.json').write_text('{"mIoU": 1.0}\n')
    # two ranks wrote the same record over each other: trailing bytes
    (new / 'b.json').write_text('{"aAcc": 95.19, "mIoU": 68.36, "time": 0.08}67}\n')
    assert table.read_metric(str(tmp_path), 'mIoU') == 68.36
    assert table.read_metric(str(tmp_path), 'pascal_voc/mAP') is None
