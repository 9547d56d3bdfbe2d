"""Every LightningDataModule of carl_geo (samples carry ``wavelengths`` in µm).

* :class:`ChipFolderDataModule` (+ :class:`ChipFolderDataset`, :class:`ChipSource` of
  :mod:`carl_geo.datasets.chips`, re-exported): labelled chip folders, one sensor per source (:mod:`.chips`);
* :class:`RasterPolygonDataModule`: a raster and polygon labels through torchgeo (:mod:`.raster_polygons`);
* :class:`SSLDataModule`, :class:`RasterSSLDataModule` (+ :class:`RasterSource`): CARL-SSL
  pre-training data (:mod:`.carl_ssl`);
* :class:`GeoBenchDataModule`: one GEO-Bench task (:mod:`.geobench`).

The torch Datasets these modules load live in :mod:`carl_geo.datasets`. Names load on first use.
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "ChipFolderDataModule": "carl_geo.datamodules.chips",
    **{n: "carl_geo.datasets.chips" for n in ("ChipFolderDataset", "ChipSource")},
    "RasterPolygonDataModule": "carl_geo.datamodules.raster_polygons",
    **{n: "carl_geo.datamodules.carl_ssl" for n in ("RasterSSLDataModule", "RasterSource", "SSLDataModule")},
    "GeoBenchDataModule": "carl_geo.datamodules.geobench",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
