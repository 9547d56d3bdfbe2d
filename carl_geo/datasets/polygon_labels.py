"""Polygon labels as a torchgeo :class:`~torchgeo.datasets.VectorDataset`.

:class:`PolygonLabels` rasterises the polygons of a vector file (any OGR format, any CRS; torchgeo
reprojects them to the query CRS) into a segmentation ``mask`` on each sample's grid, with class
names mapped to indices 0..K-1 and :data:`~carl_geo.datasets.vector_labels.IGNORE_INDEX` where
no polygon lies. Combine it with :class:`~carl_geo.datasets.SpectralRaster` through torchgeo's
``IntersectionDataset`` (``image_ds & labels``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torchgeo.datasets import VectorDataset

from carl_geo.errors import CarlGeoError
from carl_geo.datasets.vector_labels import IGNORE_INDEX, class_names_from_values, read_label_vector


class PolygonLabels(VectorDataset):
    """Labelled polygons of one vector file.

    Args:
        path: vector file with a class column.
        label_field: the class column (strings or integers).
        class_names: class order (index i = ``class_names[i]``); default: sorted distinct values.
        crs, res: query CRS and resolution (pass the image dataset's, or combine with ``&``).

    Samples: ``mask`` (H, W) int64 class indices, IGNORE_INDEX outside the polygons.
    """

    filename_glob = "*"

    def __init__(self, path: str | os.PathLike, label_field: str, class_names: Sequence[str] | None = None,
                 crs: Any = None, res: float | tuple[float, float] = 1.0) -> None:
        gdf = read_label_vector(path, label_field)  # clear errors for missing/unsuitable fields
        self.class_names = list(class_names) if class_names else class_names_from_values(gdf[label_field])
        self._index_of = {name: i for i, name in enumerate(self.class_names)}
        unknown = set(class_names_from_values(gdf[label_field])) - set(self._index_of)
        if unknown:
            raise CarlGeoError(f"labels {sorted(unknown)} of field {label_field!r} are not among class_names")
        super().__init__(paths=[str(path)], crs=crs, res=res, label_name=label_field,
                         transforms=self._to_class_index)

    def get_label(self, feature: Any) -> int:
        """1 + class index of a feature (0 is torchgeo's background fill)."""
        return 1 + self._index_of[class_names_from_values([feature[self.label_name]])[0]]

    @staticmethod
    def _to_class_index(sample: dict[str, Any]) -> dict[str, Any]:
        mask = sample["mask"].long() - 1
        sample["mask"] = torch.where(mask < 0, torch.full_like(mask, IGNORE_INDEX), mask)
        return sample
