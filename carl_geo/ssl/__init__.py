"""CARL-SSL pre-training (the upstream recipe of github IMSY-DKFZ/CARL, re-implemented).

This package holds the SSL parts (student model and predictors, masking, loss, EMA, k-NN vote and
monitor, export); the Lightning module, data modules and datasets live with their kinds (issues #19,
#29) and are re-exported here:

* :class:`CARLPretrainTask` (:mod:`carl_geo.trainers.carl_ssl`): the Lightning module (student + EMA
  teacher, spatial and spectral masking, predictors, VICReg-style feature loss, k-NN monitor);
* :class:`SSLDataModule` / :class:`RasterSSLDataModule` (:mod:`carl_geo.datamodules.carl_ssl`):
  unlabelled multi-sensor chips, one sensor
  per batch (optionally upstream's balanced multi-source loader and random band subsets,
  :class:`RandomBandSubset`, :mod:`carl_geo.datasets.band_subset`); :class:`RasterSource`;
  :class:`LayoutSource` (upstream's HySpecNet-11k, SpectralEarth and BigEarthNet folders,
  :mod:`carl_geo.datasets.pretraining_corpora`);
* :func:`export_backbone`: a CARL-SSL checkpoint -> slim backbone safetensors file;
* command line (:mod:`carl_geo.ssl_cli`, beside the other command-line modules):
  :func:`carl_geo.ssl_cli.run_pretrain` (``carl-geo pretrain``) and :func:`carl_geo.ssl_cli.register_export`
  (``carl-geo export``).

Names load on first use (the command line imports this package without torch or Lightning).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "RandomBandSubset": "carl_geo.datasets.band_subset",
    "LayoutSource": "carl_geo.datasets.pretraining_corpora",
    "RandomChips": "carl_geo.datasets.raster_chips",
    "RasterSource": "carl_geo.datamodules.carl_ssl",
    "RasterSSLDataModule": "carl_geo.datamodules.carl_ssl",
    "SSLDataModule": "carl_geo.datamodules.carl_ssl",
    "export_backbone": "carl_geo.ssl.export",
    "CARLSSLModel": "carl_geo.ssl.model",
    "CARLPretrainTask": "carl_geo.trainers.carl_ssl",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
