"""CARL-SSL pre-training (the upstream recipe of github IMSY-DKFZ/CARL, re-implemented).

* :class:`CARLPretrainTask`: the Lightning module (student + EMA teacher, spatial and spectral
  masking, predictors, VICReg-style feature loss, k-NN monitor);
* :class:`SSLDataModule` / :class:`RasterSSLDataModule`: unlabelled multi-sensor chips, one sensor
  per batch (optionally upstream's balanced multi-source loader and random band subsets,
  :class:`RandomBandSubset`); :class:`RasterSource`; :class:`LayoutSource` (upstream's
  HySpecNet-11k, SpectralEarth and BigEarthNet folders, :mod:`carl_geo.ssl.layouts`);
* :func:`export_backbone`: a CARL-SSL checkpoint -> slim backbone safetensors file;
* command line: :func:`carl_geo.ssl.cli.run_pretrain` (``carl-geo pretrain``) and
  :func:`carl_geo.ssl.cli.register_export` (``carl-geo export``).

Lightning is imported lazily by the sub-modules that need it; importing this package imports them.
"""

from carl_geo.ssl.band_subset import RandomBandSubset
from carl_geo.ssl.data import RandomChips, RasterSource, RasterSSLDataModule, SSLDataModule
from carl_geo.ssl.export import export_backbone
from carl_geo.ssl.layouts import LayoutSource
from carl_geo.ssl.model import CARLSSLModel
from carl_geo.ssl.module import CARLPretrainTask

__all__ = ["CARLPretrainTask", "CARLSSLModel", "LayoutSource", "RandomBandSubset", "RandomChips", "RasterSSLDataModule",
           "RasterSource", "SSLDataModule", "export_backbone"]
