"""The README's block table states each block's options and defaults: every
``name=value`` there is the constructor's default, and every option named
there exists (a changed default or a renamed option fails here)."""
import ast
import inspect
import re
from pathlib import Path

import pytest

from mmc3.models.blocks import C3Block, CEBlock, ConvPairBlock, GEBlock, SEBlock

README = Path(__file__).resolve().parents[3] / 'README.md'
BLOCKS = dict(C3Block=C3Block, SEBlock=SEBlock, CEBlock=CEBlock,
              GEBlock=GEBlock, ConvPairBlock=ConvPairBlock)


def _table_rows() -> dict:
    """block name -> its 'options (defaults)' cell."""
    text = README.read_text()
    section = text[text.index('## Blocks\n'):]
    section = section[:section.index('\n## ', 1)]
    rows = {}
    for line in section.splitlines():
        match = re.match(r'\| `(\w+Block)` \|', line)
        if match:
            cells = [c.strip() for c in line.strip().strip('|').split(' | ')]
            rows[match.group(1)] = cells[2]
    return rows


def test_the_table_lists_every_block():
    assert sorted(_table_rows()) == sorted(BLOCKS)


@pytest.mark.parametrize('name', sorted(BLOCKS))
def test_defaults_in_the_table_are_the_constructors(name):
    cell = _table_rows()[name]
    params = inspect.signature(BLOCKS[name].__init__).parameters
    stated = re.findall(r'`(\w+)=([^`]+)`', cell)
    assert stated, cell
    for option, literal in stated:
        assert option in params, f'{name}: README names unknown {option!r}'
        assert params[option].default == ast.literal_eval(literal), (
            f'{name}.{option}: README says {literal}, the code '
            f'{params[option].default!r}')
    # options named without a default (`grid_size`) exist too
    for option in re.findall(r'`(\w+)` \(', cell):
        assert option in params, f'{name}: README names unknown {option!r}'


@pytest.mark.parametrize('cls,new,old,value,attr', [
    (C3Block, 'ratio', 'reduction', 4, 4),
    (GEBlock, 'grid_size', 'feat_size', 5, (5, 5)),
])
def test_former_names_still_work_with_a_warning(cls, new, old, value, attr):
    kwargs = dict(in_channels=8)
    if cls is C3Block:
        kwargs['grid_size'] = 4
    else:
        kwargs.update(variant='theta', extent='global')
    with pytest.warns(DeprecationWarning, match=f'{old} is now called {new}'):
        block = cls(**kwargs, **{old: value})
    assert getattr(block, new) == attr
    reference = cls(**kwargs, **{new: value})
    assert block.state_dict().keys() == reference.state_dict().keys()
    with pytest.raises(ValueError, match=f'got {new}=.* and its former name '
                       f'{old}=.*; give {new} only'):
        bad = dict(kwargs, **{new: 3 if cls is C3Block else (3, 3)})
        cls(**bad, **{old: value})
