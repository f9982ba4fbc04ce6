"""Analysis: the papers' measures as functions and forward hooks (no CLI).

- :mod:`.diversity`: channel diversity ``d_l`` (C3 paper).
- :mod:`.cam`: class activation maps of a GAP + linear head (Zhou et al.).
- :mod:`.selectivity`: class selectivity index (Morcos et al.).
- :mod:`.importance`: dropping gated channels by their gate (GE paper).
- :mod:`.ablation`: cumulative channel ablation (Morcos et al., CE paper).
- :mod:`.bn_stats`: BN bias signs and inhibited channels (CE paper).
- :mod:`.points`: named points of a model, hooks that read or change them.
- :mod:`.runs`: a config's model with a checkpoint and its test batches.
- :mod:`.complexity`, :mod:`.seed_tables`: parameter and FLOP counts.
"""
from .ablation import ChannelAblation, ablated_channels, ablation_orders
from .bn_stats import InhibitedChannels, bn_bias_ratio, bn_layers
from .cam import (channel_contributions, class_activation_maps, linear_head,
                  top_channels)
from .diversity import (DiversityRecord, DiversityRecorder, channel_diversity,
                        diversity_at)
from .importance import GateDrop, drop_mask, gate_scores, gated_blocks
from .points import FeatureTap, default_diversity_points, stages
from .selectivity import class_means, class_selectivity

__all__ = [
    'channel_diversity', 'DiversityRecord', 'DiversityRecorder',
    'diversity_at', 'class_activation_maps', 'channel_contributions',
    'top_channels', 'linear_head', 'class_means', 'class_selectivity',
    'GateDrop', 'drop_mask', 'gate_scores', 'gated_blocks', 'ChannelAblation',
    'ablation_orders', 'ablated_channels', 'InhibitedChannels',
    'bn_bias_ratio', 'bn_layers', 'FeatureTap', 'default_diversity_points',
    'stages'
]
