"""Samplers for wavelength-aware training data."""

from carl_geo.samplers.sensor_group import SensorGroupBatchSampler

__all__ = ["SensorGroupBatchSampler"]
