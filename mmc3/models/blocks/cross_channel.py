"""Placeholder: being implemented."""
from mmengine.model import BaseModule
from mmengine.registry import MODELS


@MODELS.register_module()
class C3Block(BaseModule):
    _abbr_ = 'c3_block'

    def __init__(self, in_channels: int, init_cfg=None) -> None:
        super().__init__(init_cfg)
        raise NotImplementedError('C3Block is not implemented yet')
