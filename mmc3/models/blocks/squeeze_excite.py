"""Placeholder: being implemented."""
from mmengine.model import BaseModule
from mmengine.registry import MODELS


@MODELS.register_module()
class SEBlock(BaseModule):
    _abbr_ = 'se_block'

    def __init__(self, in_channels: int, init_cfg=None) -> None:
        super().__init__(init_cfg)
        raise NotImplementedError('SEBlock is not implemented yet')
