"""CARL-SSL pre-training (the upstream recipe of github IMSY-DKFZ/CARL, re-implemented).

This package holds the SSL parts (student model and predictors, masking, loss, EMA, k-NN monitor,
band subsets, upstream's data layouts, export, command line); the Lightning module and data
modules live with their kinds (issue #19) and are re-exported here:

* :class:`CARLPretrainTask` (:mod:`carl_geo.trainers.carl_ssl`): the Lightning module (student + EMA
  teacher, spatial and spectral masking, predictors, VICReg-style feature loss, k-NN monitor);
* :class:`SSLDataModule` / :class:`RasterSSLDataModule` (:mod:`carl_geo.datamodules.carl_ssl`):
  unlabelled multi-sensor chips, one sensor
  per batch (optionally upstream's balanced multi-source loader and random band subsets,
  :class:`RandomBandSubset`); :class:`RasterSource`; :class:`LayoutSource` (upstream's
  HySpecNet-11k, SpectralEarth and BigEarthNet folders, :mod:`carl_geo.ssl.layouts`);
* :func:`export_backbone`: a CARL-SSL checkpoint -> slim backbone safetensors file;
* command line: :func:`carl_geo.ssl.cli.run_pretrain` (``carl-geo pretrain``) and
  :func:`carl_geo.ssl.cli.register_export` (``carl-geo export``).

Names load on first use (the command line imports this package without torch or Lightning).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "RandomBandSubset": "carl_geo.ssl.band_subset",
    "LayoutSource": "carl_geo.ssl.layouts",
    "RandomChips": "carl_geo.datamodules.carl_ssl",
    "RasterSource": "carl_geo.datamodules.carl_ssl",
    "RasterSSLDataModule": "carl_geo.datamodules.carl_ssl",
    "SSLDataModule": "carl_geo.datamodules.carl_ssl",
    "export_backbone": "carl_geo.ssl.export",
    "CARLSSLModel": "carl_geo.ssl.model",
    "CARLPretrainTask": "carl_geo.trainers.carl_ssl",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
