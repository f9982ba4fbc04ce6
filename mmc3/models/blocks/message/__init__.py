"""C3's message passing, ``zbar_i = sum_j softmax_j(-(v_i - v_j)^2) z_j``
with ``v_i = mean_p z_i[p]`` (Yang et al., NeurIPS 2019, Sec. 3).

Two implementations of the same message. :mod:`.dense` builds the ``C x C``
softmax of every channel group: exact, ``O(C^2)`` memory. The fast path
(:func:`fast_message`) never forms that matrix: since the softmax is shift
invariant, the message is a ratio of two one-dimensional Gauss transforms of
the channel means, which it evaluates to a requested tolerance in ``O(C P)``
time by binning the means (:mod:`.binning`, with the expansion order chosen
from the actual bin counts and the tabulated truncation errors of
:mod:`.expansion`), forming Taylor moments per bin on a padded layout
(:mod:`.layout`), translating them between bins (:mod:`.translation`) and
evaluating them at every target, in an autograd Function with a written
backward (:mod:`.function`, whose docstring states the method and its error
control). Groups whose summaries lie within :data:`.centred.MAX_SPAN`
of each other (the common case: at initialisation the C4 head's span is
about 0.2) skip the bins: one expansion about the group's centre, two
batched products (:mod:`.centred`). :func:`message_passing`
(:mod:`.dispatch`) picks dense or fast by the measured break-even group
size (:func:`fast_min_channels`); every entry point accepts summaries
``v`` given apart from the values.
"""
from .dense import dense_message
from .dispatch import (CPU_CROSSOVER, FAST_MIN_CHANNELS, MESSAGE_IMPLS,
                       choose_message_impl, fast_min_channels,
                       message_passing)
from .function import fast_message

__all__ = [
    'CPU_CROSSOVER', 'FAST_MIN_CHANNELS', 'MESSAGE_IMPLS',
    'choose_message_impl', 'dense_message', 'fast_message',
    'fast_min_channels', 'message_passing'
]
