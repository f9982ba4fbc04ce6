"""The tools spell out the launcher choices (to parse the command line before
importing mmc3): they must stay mmc3.utils.LAUNCHERS."""
import importlib.util
import os.path as osp

import pytest

from mmc3.utils import LAUNCHERS

from ._run import TOOLS


@pytest.mark.parametrize('tool', ['train.py', 'test.py'])
def test_tool_launchers_match_mmc3_utils(tool, monkeypatch):
    # run as scripts, the tools import their sibling tools/_common.py
    monkeypatch.syspath_prepend(TOOLS)
    spec = importlib.util.spec_from_file_location(
        f'_mmc3_tool_{tool[:-3]}', osp.join(TOOLS, tool))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.LAUNCHERS == LAUNCHERS
