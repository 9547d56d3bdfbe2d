"""Data layer: every torch ``Dataset`` of carl_geo (samples carry ``wavelengths`` in µm) and what reads their files.

* :class:`SpectralRaster`: torchgeo ``RasterDataset`` whose samples carry ``wavelengths`` (C,) µm;
* :mod:`carl_geo.datasets.vector_labels`: polygons (any OGR format, any CRS) -> class mask on a grid;
  :class:`~carl_geo.datasets.polygon_labels.PolygonLabels`: the same as a torchgeo ``VectorDataset``;
* :class:`ChipFolderDataset` (+ :class:`ChipSource`): labelled chip folders (:mod:`.chips`);
* :class:`RandomChips`, :class:`LabelledRasterChips` (+ :class:`LabelRasterSource`): random chips of a
  GeoDataset and labelled chips of a scene, for CARL-SSL (:mod:`.raster_chips`);
* :class:`HySpecNet11k`, :class:`SpectralEarth`, :class:`BigEarthNetS2` (+ :class:`LayoutSource`): readers of
  upstream CARL's pre-training corpora (:mod:`.pretraining_corpora`); :class:`RandomBandSubset`
  (:mod:`.band_subset`); :class:`SyntheticSpectralDataset` (:mod:`.synthetic_spectra`);
* :mod:`carl_geo.datasets.geobench`: GEO-Bench's on-disk format (reader, :class:`GeoBenchDataset`, input
  pipeline, a synthetic benchmark);
* :mod:`.collate`: batches of samples with different band counts; :mod:`.torchgeo_wavelengths`: torchgeo
  datasets with wavelengths.

Names load on first use (``carl-geo geobench --help`` imports :mod:`carl_geo.datasets.geobench.options`
without torch).
"""

from carl_geo._lazy import lazy_exports

_EXPORTS = {
    "SpectralRaster": "carl_geo.datasets.raster",
    **{n: "carl_geo.datasets.vector_labels" for n in ("IGNORE_INDEX", "LabelRaster", "check_label_pixels",
                                                       "class_names_from_values", "rasterize_labels",
                                                       "read_label_vector")},
    **{n: "carl_geo.datasets.chips" for n in ("ChipFolderDataset", "ChipSource")},
    **{n: "carl_geo.datasets.raster_chips" for n in ("LabelRasterSource", "LabelledRasterChips", "RandomChips")},
    **{n: "carl_geo.datasets.pretraining_corpora" for n in ("BigEarthNetS2", "HySpecNet11k", "LayoutSource",
                                                             "SpectralEarth")},
    "RandomBandSubset": "carl_geo.datasets.band_subset",
    "SyntheticSpectralDataset": "carl_geo.datasets.synthetic_spectra",
    "GeoBenchDataset": "carl_geo.datasets.geobench.dataset",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = sorted(_EXPORTS)
