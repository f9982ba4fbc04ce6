"""Checks of ResNet ``plugins`` entries, with messages that name the mistake.

mmdet's and mmseg's ResNets take ``plugins=[dict(cfg=dict(type=...),
position='after_conv3', stages=(False, False, False, True)), ...]``. A
mistake in an entry surfaces deep inside them: an unknown block type as
mmcv's ``KeyError: Cannot find None in registry``, a ``stages`` tuple of the
wrong length or an unknown ``position`` as a bare ``AssertionError``, a
misspelt key (``stage=``) not at all (the entry then applies to every
stage). :func:`check_plugins` validates a list before the host is built and
raises ``TypeError`` / ``ValueError`` / ``KeyError`` whose message names the
host, the key (``plugins[0].stages``), the value received and the valid
choices. mmc3's hosts call it in their constructors;
:func:`check_config_plugins` applies it to every ``plugins`` list of a
config's model, which is how ``tools/train.py`` and ``tools/test.py`` cover
the upstream ResNets too.
"""
import inspect
from typing import Any, Iterator, List, Optional, Sequence, Tuple

#: Bottleneck positions of mmdet's and mmseg's ResNets.
PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')
#: Keys of one plugin entry.
PLUGIN_KEYS = ('cfg', 'position', 'stages')
#: Depths whose blocks are ``BasicBlock``, which take no plugins.
BASIC_BLOCK_DEPTHS = (18, 34)
CUSTOM_IMPORTS_HINT = ("custom_imports=dict(imports=['mmc3'], "
                       'allow_failed_imports=False)')


def _type_is_registered(block_type: str, scope: Optional[str]) -> Tuple[bool,
                                                                        str]:
    """Whether ``block_type`` resolves as mmcv's ``build_plugin_layer``
    resolves it (the scope's registry and its parents); and that scope."""
    from mmengine.registry import MODELS
    with MODELS.switch_scope_and_registry(scope) as registry:
        return registry.get(block_type) is not None, registry.scope


def check_plugins(plugins: Any,
                  host: str,
                  num_stages: int = 4,
                  stage_lengths: Optional[Sequence[int]] = None,
                  scope: Optional[str] = None,
                  depth: Optional[int] = None,
                  positions: Sequence[str] = PLUGIN_POSITIONS,
                  unstaged_positions: Sequence[str] = (),
                  basic_blocks: bool = False) -> Optional[List[dict]]:
    """Validate a ResNet ``plugins`` list; raise a message naming the mistake.

    Args:
        plugins: the host's ``plugins`` argument (``None`` is accepted).
        host (str): the host's name, put first in every message.
        num_stages (int): the host's number of stages; ``stages`` must have
            this length unless ``stage_lengths`` says otherwise.
        stage_lengths (Sequence[int], optional): accepted lengths of
            ``stages`` (mmc3's RoI head accepts 1 and 4). Defaults to
            ``(num_stages, )``.
        scope (str, optional): registry scope in which block types are
            looked up (``'mmdet'``, ``'mmseg'``, ...). Defaults to the
            current default scope.
        depth (int, optional): the ResNet depth; depths 18 and 34
            (``BasicBlock``) take no plugins unless ``basic_blocks``.
        positions (Sequence[str]): the host's valid positions. Defaults to
            mmdet's bottleneck positions.
        unstaged_positions (Sequence[str]): positions that exist once per
            network (after the stem), whose entries take no ``stages``.
        basic_blocks (bool): whether the host's ``BasicBlock`` takes
            plugins (mmc3's classification hosts).

    Returns:
        list[dict] or None: ``plugins`` as a list (unchanged entries).

    Raises:
        TypeError: ``plugins`` is not a list of dicts, an entry has an
            unknown key, a ``cfg`` without ``type``, a ``stages`` that is
            not a tuple of bools.
        ValueError: an unknown ``position``, ``stages`` of the wrong
            length, ``cfg.in_channels`` set, plugins on a BasicBlock depth.
        KeyError: a block ``type`` that is not registered.
    """
    if plugins is None:
        return None
    if not isinstance(plugins, (list, tuple)):
        raise TypeError(f'{host}: plugins must be a list of dicts, got '
                        f'{type(plugins).__name__} {plugins!r}')
    lengths = tuple(stage_lengths or (num_stages, ))
    if plugins and depth in BASIC_BLOCK_DEPTHS and not basic_blocks:
        raise ValueError(
            f'{host}: plugins need a Bottleneck ResNet (depth 50, 101 or '
            f'152); depth={depth} is built from BasicBlocks, which take no '
            'plugins')
    for i, plugin in enumerate(plugins):
        key = f'plugins[{i}]'
        if not isinstance(plugin, dict):
            raise TypeError(f'{host}: {key} must be a dict with keys '
                            f'{", ".join(PLUGIN_KEYS)}, got '
                            f'{type(plugin).__name__} {plugin!r}')
        unknown = sorted(set(plugin) - set(PLUGIN_KEYS))
        if unknown:
            raise TypeError(f'{host}: {key} has unknown key(s) '
                            f'{", ".join(map(repr, unknown))}; valid keys: '
                            f'{", ".join(PLUGIN_KEYS)}, got {plugin!r}')
        for required in ('cfg', 'position'):
            if required not in plugin:
                raise TypeError(f'{host}: {key} needs the key {required!r} '
                                f'(keys: {", ".join(PLUGIN_KEYS)}), got '
                                f'{plugin!r}')
        cfg = plugin['cfg']
        if not isinstance(cfg, dict) or 'type' not in cfg:
            raise TypeError(f"{host}: {key}.cfg must be a dict with a 'type' "
                            f'key, got {cfg!r}')
        if 'in_channels' in cfg:
            raise ValueError(
                f'{host}: {key}.cfg.in_channels must not be set (the host '
                'injects the channels of the position), got '
                f'{cfg["in_channels"]!r}')
        block_type = cfg['type']
        if not inspect.isclass(block_type):
            if not isinstance(block_type, str):
                raise TypeError(f'{host}: {key}.cfg.type must be a str or a '
                                f'class, got {type(block_type).__name__} '
                                f'{block_type!r}')
            found, where = _type_is_registered(block_type, scope)
            if not found:
                raise KeyError(
                    f'{host}: {key}.cfg.type {block_type!r} is not registered '
                    f"in the '{where}' registry or its parents. If it is an "
                    'mmc3 block (C3Block, SEBlock, CEBlock, GEBlock), add '
                    f'{CUSTOM_IMPORTS_HINT} to the config; otherwise check '
                    'the spelling or import the module that registers it')
        position = plugin['position']
        if position not in positions:
            raise ValueError(
                f'{host}: {key}.position must be one of '
                f'{", ".join(map(repr, positions))}, got {position!r}')
        stages = plugin.get('stages')
        if stages is None:
            continue
        if position in unstaged_positions:
            raise ValueError(
                f'{host}: {key}.stages must not be set for position '
                f'{position!r} (it exists once per network), got {stages!r}')
        if not isinstance(stages, (list, tuple)) or not all(
                isinstance(s, bool) for s in stages):
            raise TypeError(f'{host}: {key}.stages must be None or a tuple of '
                            f'bools, got {stages!r}')
        if len(stages) not in lengths:
            expected = ' or '.join(str(n) for n in lengths)
            raise ValueError(
                f'{host}: {key}.stages must have {expected} entries (one per '
                f'stage), got {len(stages)}: {stages!r}')
    return list(plugins)


def _plugin_hosts(node: Any, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, dict)`` for every dict under ``node`` with plugins."""
    if isinstance(node, dict):
        if node.get('plugins') is not None:
            yield key, node
        for name, value in node.items():
            yield from _plugin_hosts(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _plugin_hosts(value, f'{key}.{i}')


def _host_class(host_type: Any, scope: Optional[str]) -> Any:
    """The class a host ``type`` names in ``scope`` (None if unknown)."""
    if not isinstance(host_type, str):
        return host_type
    from mmengine.registry import MODELS
    try:
        with MODELS.switch_scope_and_registry(scope) as registry:
            return registry.get(host_type)
    except KeyError:  # an unknown scope prefix
        return None


def check_config_plugins(cfg: Any) -> Optional[str]:
    """Check every ``plugins`` list in ``cfg.model``; return the first
    problem as a message (``None`` if there is none).

    The message starts with the config key of the host (``model.backbone``)
    and its type, then what :func:`check_plugins` says. The host's
    ``num_stages`` (default 4) gives the length of ``stages``; mmc3's
    ``PluginResLayer`` RoI head accepts 1 or 4. A host class with a
    ``plugin_check_args(host_cfg)`` classmethod (mmc3's classification
    hosts) supplies its own positions, stage count and depth rules. Block
    types are looked up in the config's ``default_scope``.
    """
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    if not isinstance(model, dict):
        return None
    scope = cfg.get('default_scope')
    for key, host in _plugin_hosts(model, 'model'):
        host_type = host.get('type')
        name = f'{key} ({host_type})' if host_type else key
        num_stages = host.get('num_stages', 4)
        lengths = (1, 4) if host_type == 'PluginResLayer' else None
        kwargs = dict(num_stages=num_stages, stage_lengths=lengths,
                      depth=host.get('depth'))
        host_cls = _host_class(host_type, scope)
        if hasattr(host_cls, 'plugin_check_args'):
            kwargs = host_cls.plugin_check_args(host)
        try:
            check_plugins(host['plugins'], name, scope=scope, **kwargs)
        except (TypeError, ValueError, KeyError) as exc:
            return exc.args[0] if exc.args else str(exc)
    return None
