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

Names load on first use (the command line imports this package without torch or Lightning).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "RandomBandSubset": "carl_geo.ssl.band_subset",
    "LayoutSource": "carl_geo.ssl.layouts",
    "RandomChips": "carl_geo.ssl.data",
    "RasterSource": "carl_geo.ssl.data",
    "RasterSSLDataModule": "carl_geo.ssl.data",
    "SSLDataModule": "carl_geo.ssl.data",
    "export_backbone": "carl_geo.ssl.export",
    "CARLSSLModel": "carl_geo.ssl.model",
    "CARLPretrainTask": "carl_geo.ssl.module",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
