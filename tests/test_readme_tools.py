"""The README's Tools table names every tool in tools/."""
import glob
import os.path as osp
import re

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_every_tool_has_a_line_in_the_readme():
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    start = readme.index('## Tools')
    table = readme[start:readme.index('\n## ', start + 1)]
    listed = set(re.findall(r'`(tools/[\w/]+\.(?:py|sh))', table))
    tools = {osp.relpath(p, ROOT) for ext in ('py', 'sh')
             for p in glob.glob(osp.join(ROOT, 'tools', '**', f'*.{ext}'),
                                recursive=True)}
    assert tools - listed == set(), 'tools without a README line'
    assert listed - tools == set(), 'README lines for tools that do not exist'
