"""Small real scenes shipped inside carl_geo (no download at run time).

:func:`nc_landsat7` returns the GRASS GIS "North Carolina" Landsat 7 ETM+ scene (year 2000,
28.5 m, 6 reflective bands), its dense 7-class land-cover reference map and an analyst's
training polygons (1996 labels). Data: GRASS GIS North Carolina sample data set,
CC BY-SA 3.0 (see ``nc_landsat7/NOTICE``). The files are written by
``scripts/prepare_sample_data.py``.

Example::

    from carl_geo.sample_data import nc_landsat7
    scene = nc_landsat7()
    scene.image        # Path of the 6-band GeoTIFF (uint8 DN, nodata 0)
    scene.wavelengths  # (0.485, 0.56, 0.66, 0.835, 1.65, 2.22) µm
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: Land-cover classes of ``strata.tif``: value i + 1 is ``NC_CLASS_NAMES[i]``.
NC_CLASS_NAMES: tuple[str, ...] = (
    "developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment",
)
#: RGB (0-255) display colour of each class, same order as :data:`NC_CLASS_NAMES`.
NC_CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (200, 40, 40),    # developed: red
    (235, 215, 60),   # agriculture: yellow
    (170, 225, 120),  # herbaceous: light green
    (130, 130, 30),   # shrubland: olive
    (20, 100, 35),    # forest: dark green
    (40, 90, 210),    # water: blue
    (210, 180, 140),  # sediment: tan
)
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


def write_crop(scene: SampleScene, out_dir: str | Path, row: int, col: int, height: int,
               width: int | None = None) -> SampleScene:
    """Copy a pixel window of ``scene`` into ``out_dir`` (image with all its band metadata,
    strata, and the polygons that intersect the window, unclipped, in their own CRS).

    Small real rasters for tests and tutorials. Returns the cropped :class:`SampleScene`.
    """
    import geopandas as gpd
    import rasterio
    from rasterio.windows import Window
    from shapely.geometry import box

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    win = Window(col, row, width or height, height)
    paths = {}
    for key in ("image", "strata"):
        src_path: Path = getattr(scene, key)
        with rasterio.open(src_path) as src:
            profile = src.profile
            profile.update(width=int(win.width), height=int(win.height), transform=src.window_transform(win),
                           tiled=False, blockxsize=None, blockysize=None)
            profile = {k: v for k, v in profile.items() if v is not None and k not in ("blockxsize", "blockysize")}
            data = src.read(window=win)
            paths[key] = out / src_path.name
            with rasterio.open(paths[key], "w", **profile) as dst:
                dst.write(data)
                dst.update_tags(**src.tags())
                for b in src.indexes:
                    dst.set_band_description(b, src.descriptions[b - 1] or "")
                    for ns in src.tag_namespaces(b):
                        dst.update_tags(b, ns=ns, **src.tags(b, ns=ns))
                    dst.update_tags(b, **src.tags(b))
                if key == "strata":
                    dst.write_colormap(1, src.colormap(1))
            if key == "image":
                bounds, image_crs = rasterio.windows.bounds(win, src.transform), src.crs
    gdf = gpd.read_file(scene.polygons)
    frame = gpd.GeoSeries([box(*bounds)], crs=image_crs).to_crs(gdf.crs).iloc[0]
    paths["polygons"] = out / scene.polygons.name
    gdf[gdf.intersects(frame)].reset_index(drop=True).to_file(paths["polygons"], driver="GPKG")
    return SampleScene(image=paths["image"], strata=paths["strata"], polygons=paths["polygons"],
                       label_field=scene.label_field, class_names=scene.class_names, colors=scene.colors,
                       wavelengths=scene.wavelengths, band_names=scene.band_names, sensor=scene.sensor,
                       notice=scene.notice)


__all__ = ["NC_CLASS_COLORS", "NC_CLASS_NAMES", "NC_SENSOR", "SampleScene", "nc_landsat7", "sample_dir", "write_crop"]
