"""Placeholder: being implemented."""
from mmengine.model import BaseModule
from mmengine.registry import MODELS


@MODELS.register_module()
class GEBlock(BaseModule):
    _abbr_ = 'ge_block'

    def __init__(self, in_channels: int, init_cfg=None) -> None:
        super().__init__(init_cfg)
        raise NotImplementedError('GEBlock is not implemented yet')
