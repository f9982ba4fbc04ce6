"""Packaging: pip install mmc3 asks for ranges, CI installs exact pins, and
the two agree (every pin lies in its range)."""
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements(name: str) -> dict:
    reqs = {}
    for line in (ROOT / 'requirements' / f'{name}.txt').read_text().split(
            '\n'):
        line = line.split('#', 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[req.name.lower()] = req
    return reqs


def test_install_requires_are_ranges_not_pins():
    setup = (ROOT / 'setup.py').read_text()
    assert re.search(r"read_requirements\('torch_supported', 'supported'\)",
                     setup)
    for name in ('torch_supported', 'supported'):
        for req in _requirements(name).values():
            assert not any(spec.operator == '==' for spec in req.specifier), \
                f'{name}.txt pins {req}'


def test_every_ci_pin_is_inside_the_supported_range():
    supported = dict(_requirements('supported'),
                     **_requirements('torch_supported'))
    pins = dict(_requirements('mminstall'), **_requirements('runtime'),
                **_requirements('torch'))
    assert set(supported) <= set(pins) | {'torchvision'}
    for name, pin in pins.items():
        (spec, ) = pin.specifier
        assert spec.operator == '==', pin
        assert name in supported, f'{name} is pinned but not declared'
        assert supported[name].specifier.contains(spec.version), (
            f'the CI pin {pin} is outside the supported {supported[name]}')
