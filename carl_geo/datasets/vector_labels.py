"""Training polygons from any OGR vector file, rasterised to a class mask on a raster's grid.

:func:`read_label_vector` reads and validates the class column; :func:`rasterize_labels`
reprojects the polygons to the raster's CRS (geopandas) and burns them into a (H, W) mask of
class indices (``rasterio.features.rasterize``), with :data:`IGNORE_INDEX` where no polygon lies
or where polygons of different classes overlap. :func:`check_label_pixels` applies the rules a
training run needs (two classes at least, enough valid pixels per class).

Errors a user can cause raise a :class:`~carl_geo.errors.CarlGeoError` (a ValueError) or
:class:`FileNotFoundError` with a message that says what to fix. Nothing is dropped silently:
features without a class value, and line or point features among polygons, are left out with
one :class:`~carl_geo.errors.CarlGeoWarning` each; a file of only lines or only points is refused.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine
from rasterio.crs import CRS
from rasterio.features import rasterize
from shapely.geometry import box

from carl_geo.errors import CarlGeoError, CarlGeoWarning, InputError

#: Mask value of unlabelled pixels (and of pixels claimed by polygons of different classes).
IGNORE_INDEX = -1
#: A class column with more distinct values than this is not taken to be categorical.
MAX_CLASSES = 100
#: Fewest labelled valid pixels a class needs to be trained.
MIN_CLASS_PIXELS = 4


@dataclass
class LabelRaster:
    """Polygons burnt into a raster grid.

    Attributes:
        mask: (H, W) int64 class index 0..K-1, :data:`IGNORE_INDEX` elsewhere.
        polygon_ids: (H, W) int32, 1 + row number of the polygon covering the pixel, 0 elsewhere
            (used to hold out whole polygons for validation).
        class_names: K class names; ``mask == i`` is ``class_names[i]``.
        polygon_classes: class index of each polygon (row order of the GeoDataFrame).
        n_polygons_outside: polygons that do not touch the grid.
        n_conflict_pixels: pixels under polygons of two or more classes (left unlabelled).
    """

    mask: np.ndarray
    polygon_ids: np.ndarray
    class_names: list[str]
    polygon_classes: np.ndarray
    n_polygons_outside: int = 0
    n_conflict_pixels: int = 0
    pixel_counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.class_names)
        self.pixel_counts = {n: int((self.mask == i).sum()) for i, n in enumerate(self.class_names)} if k else {}


def read_label_vector(path: str | os.PathLike, label_field: str) -> gpd.GeoDataFrame:
    """Read a vector file (any OGR format) and check its class column.

    Returns:
        GeoDataFrame with non-empty geometries and a non-null ``label_field``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, no CRS, missing column, no features, or a column that is
            not categorical (non-integer numbers, or more than :data:`MAX_CLASSES` values).
    """
    source = os.fspath(path)  # GDAL's virtual file systems (/vsizip/, /vsicurl/, ...) as given: predict reads them
    path = Path(path)
    if not source.startswith("/vsi") and not path.exists():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        layer = polygon_layer(source, path.name, label_field)
        gdf = gpd.read_file(source, **({"layer": layer} if layer is not None else {}))
    except (RuntimeError, OSError, ValueError) as e:  # pyogrio's errors are RuntimeErrors
        if isinstance(e, CarlGeoError):
            raise
        raise CarlGeoError(f"cannot read {path} as a vector file: {e}") from None
    if label_field not in gdf.columns or label_field == gdf.geometry.name:
        fields = [c for c in gdf.columns if c != gdf.geometry.name]
        raise CarlGeoError(f"{path.name} has no field {label_field!r}; its fields are: {', '.join(fields) or 'none'}")
    if gdf.crs is None:
        raise CarlGeoError(f"{path.name} has no coordinate reference system; "
                           "set one (e.g. with QGIS or ogr2ogr -a_srs)")
    has_geometry = gdf.geometry.notna() & ~gdf.geometry.is_empty
    if not has_geometry.all():  # say how many, per class: a class can vanish this way
        lost = gdf.loc[~has_geometry, label_field].fillna("(no class)").astype(str).value_counts()
        per_class = ", ".join(f"{name}: {n}" for name, n in lost.sort_index().items())
        kept_classes = set(gdf.loc[has_geometry, label_field].dropna().astype(str))
        gone = sorted(set(lost.index) - kept_classes - {"(no class)"})
        warnings.warn(f"{int((~has_geometry).sum())} feature(s) in {path.name} have no geometry (or an empty one) and "
                      f"were left out ({per_class})" + (f"; class(es) {', '.join(gone)} have no polygon left"
                                                        if gone else ""), CarlGeoWarning, stacklevel=2)
    gdf = _polygons_only(gdf[has_geometry], path.name)
    missing = gdf[label_field].isna()
    if missing.any() and not missing.all():
        warnings.warn(f"{int(missing.sum())} of the {len(gdf)} polygons in {path.name} have no value in field "
                      f"{label_field!r} and were left out", CarlGeoWarning, stacklevel=2)
    gdf = gdf[~missing].reset_index(drop=True)
    if gdf.empty:
        raise CarlGeoError(f"{path.name} has no feature with a geometry and a value in field {label_field!r}")
    check_categorical(gdf[label_field], label_field)
    look_alike = look_alike_classes(gdf[label_field])
    if look_alike:
        pairs = "; ".join(" and ".join(repr(n) for n in group) for group in look_alike)
        warnings.warn(f"classes that differ only in upper / lower case or spaces ({pairs}) are trained as different "
                      f"classes; if each group is one class, correct field {label_field!r} in {path.name}",
                      CarlGeoWarning, stacklevel=2)
    return gdf


def polygon_layer(source: str, name: str, label_field: str) -> str | None:
    """The layer of a file with several (a GeoPackage of an analyst's project) to read the polygons from: the only
    one with area geometries and a field ``label_field`` (a :class:`~carl_geo.errors.CarlGeoWarning` names it).
    None for a file of one layer (or one whose layers GDAL does not list).

    Raises:
        CarlGeoError: no such layer, or several (naming them and how to pick one).
    """
    import pyogrio

    try:
        layers = [(str(n), str(t) if t is not None else "") for n, t in pyogrio.list_layers(source)]
    except Exception:  # noqa: BLE001 - unreadable here: gpd.read_file says why, with its own words
        return None
    if len(layers) <= 1:
        return None
    fits = [n for n, t in layers if ("Polygon" in t or "Surface" in t or t.startswith(("Unknown", "Geometry")))
            and label_field in pyogrio.read_info(source, layer=n)["fields"]]  # Unknown: mixed types, checked later
    listing = ", ".join(f"{n} ({t or 'no geometry'})" for n, t in layers)
    if len(fits) == 1:
        warnings.warn(f"{name} holds {len(layers)} layers ({listing}): the polygons are read from {fits[0]!r}, the "
                      f"only polygon layer with a field {label_field!r}", CarlGeoWarning, stacklevel=3)
        return fits[0]
    export = ("export the layer to train on to a file of its own (QGIS: right-click the layer > Export > Save "
              f"Features As; or ogr2ogr one_layer.gpkg {name} LAYER_NAME)")
    if not fits:
        raise CarlGeoError(f"{name} holds {len(layers)} layers ({listing}) and none of them is a polygon layer with a "
                           f"field {label_field!r}: check the label field, or {export}")
    raise CarlGeoError(f"{name} holds {len(fits)} polygon layers with a field {label_field!r} "
                       f"({', '.join(fits)}): {export}")


def look_alike_classes(values: pd.Series) -> list[list[str]]:
    """Groups of text labels that are equal but for upper / lower case and surrounding spaces (``'Forest '``,
    ``'forest'``): almost always one class typed two ways."""
    groups: dict[str, set[str]] = {}
    for v in pd.unique(values):
        if isinstance(v, str):
            groups.setdefault(" ".join(v.split()).casefold(), set()).add(v)
    return [sorted(g) for g in groups.values() if len(g) > 1]


#: Geometry types that cover an area (a class can be burnt into the pixels they cover).
AREA_TYPES = ("Polygon", "MultiPolygon")
_KIND = {"LineString": "line", "MultiLineString": "line", "LinearRing": "line", "Point": "point",
         "MultiPoint": "point"}


def _polygons_only(gdf: gpd.GeoDataFrame, name: str) -> gpd.GeoDataFrame:
    """The polygon features; lines / points among them are left out with a warning, a file with none
    raises a :class:`CarlGeoError` that says how to turn them into polygons."""
    types = gdf.geometry.geom_type
    areas = types.isin(AREA_TYPES)
    if areas.all():
        return gdf
    others = types[~areas].map(lambda t: _KIND.get(t, t)).value_counts()
    found = " and ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in others.items())
    if not areas.any():
        raise InputError(
            f"{name} holds {found}, no polygons: training labels must be polygons (areas of one class each); "
            "turn lines or points into polygons first (e.g. QGIS Vector > Geoprocessing > Buffer, a distance of "
            "about one pixel) or digitise polygons")
    warnings.warn(f"{found} in {name} were left out: training uses polygons only", CarlGeoWarning, stacklevel=3)
    return gdf[areas]


def class_codes(class_names: Sequence[str]) -> list[int] | None:
    """The classes' own numeric codes when every class name is a whole number in 0..65534 (labels
    such as 1, 3, 4 keep their values in predicted rasters); None for text labels (0..K-1)."""
    codes = []
    for n in class_names:
        text = str(n).strip()
        if not text.isdigit() or str(int(text)) != text or int(text) > 65534:
            return None
        codes.append(int(text))
    return codes if len(set(codes)) == len(codes) else None


def check_categorical(values: pd.Series, label_field: str) -> None:
    """Raise ValueError unless ``values`` look like class labels (text, integers, or whole floats)."""
    if pd.api.types.is_bool_dtype(values):
        return
    if pd.api.types.is_float_dtype(values):
        v = values.to_numpy(dtype=float)
        if not np.all(np.isfinite(v)) or not np.array_equal(v, np.round(v)):
            raise CarlGeoError(
                f"field {label_field!r} holds non-integer numbers (e.g. {v[v != np.round(v)][:3].tolist()}); "
                "it looks like a measurement, not a class: choose a text or integer class column"
            )
    n = values.nunique()
    if n > MAX_CLASSES:
        raise CarlGeoError(
            f"field {label_field!r} has {n} distinct values; a class column may have at most {MAX_CLASSES}: "
            "choose the column that holds the class of each polygon"
        )


def class_names_from_values(values: Sequence | pd.Series) -> list[str]:
    """Sorted distinct labels as strings (numbers sorted numerically: 2 before 10; 3.0 -> "3")."""
    uniq = pd.unique(pd.Series(values))
    if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in uniq):
        return [_label_str(v) for v in sorted(uniq)]
    return sorted(str(v) for v in uniq)


def _label_str(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def rasterize_labels(gdf: gpd.GeoDataFrame, label_field: str, *, shape: tuple[int, int], transform: Affine,
                     crs: CRS | str | None, class_names: Sequence[str] | None = None,
                     all_touched: bool = False) -> LabelRaster:
    """Burn the polygons into a class mask on the grid (``shape`` (H, W), ``transform``, ``crs``).

    The polygons are reprojected to ``crs`` first. Pixels whose centre lies in a polygon get its
    class (``all_touched=True``: every pixel the polygon touches); pixels claimed by polygons of
    two different classes get :data:`IGNORE_INDEX`.

    Args:
        class_names: class order to use; default :func:`class_names_from_values` of the column.
            A label not in ``class_names`` raises ValueError.

    Raises:
        ValueError: raster without CRS, or no polygon overlaps the grid.
    """
    if crs is None:
        raise CarlGeoError("the raster has no coordinate reference system; "
                           "assign one (e.g. gdal_edit.py -a_srs EPSG:xxxx)")
    crs = CRS.from_user_input(crs)
    height, width = int(shape[0]), int(shape[1])
    labels = [_label_str(v) if not isinstance(v, str) else v for v in gdf[label_field]]
    names = list(class_names) if class_names is not None else class_names_from_values(gdf[label_field])
    lookup = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(lookup))
    if unknown:
        raise CarlGeoError(f"labels {unknown} of field {label_field!r} are not among the classes {names}")

    left, top = transform.c, transform.f
    right, bottom = transform @ (width, height)
    geoms, inside = polygons_on_grid(gdf, crs, (min(left, right), min(top, bottom), max(left, right), max(top, bottom)))

    classes = np.array([lookup[v] for v in labels], dtype=np.int64)
    mask = np.full((height, width), IGNORE_INDEX, dtype=np.int64)
    claimed = np.zeros((height, width), dtype=np.int32)
    for k in np.unique(classes[inside]):
        shapes = [(g, 1) for g, c, ok in zip(geoms, classes, inside) if ok and c == k]
        burnt = rasterize(shapes, out_shape=(height, width), transform=transform, fill=0, dtype="uint8",
                          all_touched=all_touched).astype(bool)
        mask[burnt] = k
        claimed += burnt
    mask[claimed > 1] = IGNORE_INDEX
    ids = rasterize([(g, i + 1) for i, (g, ok) in enumerate(zip(geoms, inside)) if ok],
                    out_shape=(height, width), transform=transform, fill=0, dtype="int32", all_touched=all_touched)
    return LabelRaster(mask=mask, polygon_ids=ids, class_names=names, polygon_classes=classes,
                       n_polygons_outside=int((~inside).sum()), n_conflict_pixels=int((claimed > 1).sum()))


def polygons_on_grid(gdf: gpd.GeoDataFrame, crs: CRS | str,
                     bounds: tuple[float, float, float, float]) -> tuple[gpd.GeoSeries, np.ndarray]:
    """Geometries reprojected to ``crs`` and a bool array: which of them intersect ``bounds``
    (xmin, ymin, xmax, ymax in ``crs``).

    Raises:
        ValueError: no geometry intersects (message says whether the polygons were reprojected).
    """
    crs = CRS.from_user_input(crs)
    reprojected = CRS.from_user_input(gdf.crs) != crs
    geoms = gdf.to_crs(crs).geometry if reprojected else gdf.geometry
    grid = box(*bounds)
    inside = geoms.intersects(grid).to_numpy()
    if not inside.any():
        gb = np.round(geoms.total_bounds, 1).tolist()
        where = (f"after reprojection from {CRS.from_user_input(gdf.crs).to_string()} to {crs.to_string()}"
                 if reprojected else f"in {crs.to_string()}")
        raise CarlGeoError(
            f"no polygon overlaps the raster {where}: the polygons span {gb}, the raster "
            f"{np.round(grid.bounds, 1).tolist()}; check that the label file belongs to this raster "
            "(and that its CRS is declared correctly)"
        )
    return geoms, inside


def valid_class_pixels(labels: LabelRaster, valid: np.ndarray | None = None) -> dict[str, int]:
    """Labelled pixels of each class on valid data (``valid`` (H, W) bool, True where the raster has data)."""
    mask = labels.mask if valid is None else np.where(valid, labels.mask, IGNORE_INDEX)
    return {n: int((mask == i).sum()) for i, n in enumerate(labels.class_names)}


def scarce_classes(labels: LabelRaster, valid: np.ndarray | None = None, *,
                   min_pixels: int = MIN_CLASS_PIXELS) -> dict[str, int]:
    """Classes with fewer than ``min_pixels`` labelled pixels on valid data (``valid`` (H, W) bool): name -> pixels."""
    return {n: c for n, c in valid_class_pixels(labels, valid).items() if c < min_pixels}


def without_classes(gdf: gpd.GeoDataFrame, label_field: str, names: Sequence[str]) -> gpd.GeoDataFrame:
    """The polygons of ``gdf`` whose label (as :func:`rasterize_labels` spells it) is not in ``names``."""
    drop = set(names)
    labels = [_label_str(v) if not isinstance(v, str) else v for v in gdf[label_field]]
    return gdf[[v not in drop for v in labels]]


def check_label_pixels(labels: LabelRaster, valid: np.ndarray | None = None, *,
                       min_pixels: int = MIN_CLASS_PIXELS) -> None:
    """Rules for training: at least two classes, and every class at least ``min_pixels`` labelled
    pixels on valid data (``valid`` (H, W) bool, True where the raster has data).

    Raises:
        ValueError: naming the classes at fault and what to do.
    """
    counts = valid_class_pixels(labels, valid)
    present = [n for n, c in counts.items() if c > 0]
    if not present:
        raise CarlGeoError("no polygon covers a valid raster pixel: the raster is nodata or NaN under all of them "
                           "(or they are smaller than a pixel); check the nodata value and the bands")
    if len(labels.class_names) < 2 or len(present) < 2:
        only = present[0]
        raise CarlGeoError(
            f"the polygons hold only one class ({only!r}) on valid raster pixels; "
            "a classifier needs at least two classes: digitise polygons of the other classes too"
        )
    small = {n: c for n, c in counts.items() if c < min_pixels}
    if small:
        desc = ", ".join(f"{n!r} ({c} px)" for n, c in small.items())
        raise CarlGeoError(
            f"class(es) {desc} cover fewer than {min_pixels} valid raster pixels: their polygons are "
            "smaller than a pixel, outside the raster or on nodata; draw larger polygons for them "
            "or remove them from the label file"
        )
