"""Batch samplers for wavelength-aware training data (every sampler of carl_geo lives here).

* :class:`SensorGroupBatchSampler`: one sensor per batch, all batches of every sensor;
* :class:`BalancedSourceBatchSampler`: one source per batch, every source truncated to the
  smallest one's batch count (upstream CARL's multi-source loader);
* :class:`EpochBatchSampler`: any batch sampler with Lightning's per-epoch ``set_epoch`` and its
  own sharding over DDP ranks (:mod:`carl_geo.samplers.epochs`).
"""

from carl_geo.samplers.balanced_source import BalancedSourceBatchSampler
from carl_geo.samplers.epochs import EpochBatchSampler
from carl_geo.samplers.sensor_group import SensorGroupBatchSampler

__all__ = ["BalancedSourceBatchSampler", "EpochBatchSampler", "SensorGroupBatchSampler"]
