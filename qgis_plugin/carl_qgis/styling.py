"""Display of CARL class maps in QGIS: a paletted renderer with the model's names and colours."""

from __future__ import annotations

from collections.abc import Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor


def paletted_renderer(layer: QgsRasterLayer, class_names: Sequence[str],
                      colors: Sequence[Sequence[int]], band: int = 1,
                      values: Sequence[int] | None = None) -> QgsPalettedRasterRenderer:
    """Renderer showing pixel value ``values[i]`` (default ``i``) as ``class_names[i]`` in RGB
    ``colors[i]`` (0-255)."""
    if len(class_names) != len(colors):
        raise ValueError(f"{len(class_names)} class names but {len(colors)} colours")
    values = list(range(len(class_names))) if values is None else [int(v) for v in values]
    classes = [
        QgsPalettedRasterRenderer.Class(v, QColor(int(c[0]), int(c[1]), int(c[2])), str(name))
        for v, name, c in zip(values, class_names, colors)
    ]
    return QgsPalettedRasterRenderer(layer.dataProvider(), band, classes)


def apply_class_style(layer: QgsRasterLayer, class_names: Sequence[str], colors: Sequence[Sequence[int]],
                      values: Sequence[int] | None = None) -> None:
    """Give a class raster the paletted renderer and repaint it."""
    layer.setRenderer(paletted_renderer(layer, class_names, colors, values=values))
    layer.triggerRepaint()


class ClassStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles the class raster once Processing has loaded it into the project.

    Processing keeps only a C++ pointer to a post-processor, so every instance is also kept
    in :attr:`_alive` until it has run (otherwise Python would garbage-collect it first).
    """

    _alive: list[ClassStylePostProcessor] = []

    def __init__(self, class_names: Sequence[str], colors: Sequence[Sequence[int]], layer_name: str = "",
                 values: Sequence[int] | None = None) -> None:
        super().__init__()
        self.values = list(values) if values is not None else None
        self.class_names = list(class_names)
        self.colors = [tuple(int(v) for v in c) for c in colors]
        self.layer_name = layer_name
        ClassStylePostProcessor._alive.append(self)

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802 (Qt API)
                         feedback: QgsProcessingFeedback) -> None:
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            apply_class_style(layer, self.class_names, self.colors, self.values)
            if self.layer_name:
                layer.setName(self.layer_name)
        if self in ClassStylePostProcessor._alive:
            ClassStylePostProcessor._alive.remove(self)


def style_on_load(context: QgsProcessingContext, output_path: str, class_names: Sequence[str],
                  colors: Sequence[Sequence[int]], layer_name: str = "", values: Sequence[int] | None = None) -> bool:
    """Attach a :class:`ClassStylePostProcessor` to ``output_path`` if Processing will load it
    into a project (``processing.runAndLoadResults`` or the toolbox dialog). Returns whether it did."""
    if not context.willLoadLayerOnCompletion(output_path):
        return False
    details = context.layerToLoadOnCompletionDetails(output_path)
    details.setPostProcessor(ClassStylePostProcessor(class_names, colors, layer_name, values))
    if layer_name:
        details.name = layer_name
    return True


def categorized_renderer(class_names: Sequence[str], colors: Sequence[Sequence[int]],
                         field: str = "class_id") -> QgsCategorizedSymbolRenderer:
    """Renderer of the class polygons: category ``i`` of ``field`` filled with ``colors[i]``, legend
    ``class_names[i]``."""
    if len(class_names) != len(colors):
        raise ValueError(f"{len(class_names)} class names but {len(colors)} colours")
    categories = []
    for i, (name, c) in enumerate(zip(class_names, colors)):
        symbol = QgsFillSymbol.createSimple({"color": f"{int(c[0])},{int(c[1])},{int(c[2])},255",
                                             "outline_color": "50,50,50,255", "outline_width": "0.1"})
        categories.append(QgsRendererCategory(i, symbol, str(name)))
    return QgsCategorizedSymbolRenderer(field, categories)


class PolygonStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Gives the loaded class polygons the categorized renderer (kept alive like
    :class:`ClassStylePostProcessor`)."""

    _alive: list[PolygonStylePostProcessor] = []

    def __init__(self, class_names: Sequence[str], colors: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.colors = [tuple(int(v) for v in c) for c in colors]
        PolygonStylePostProcessor._alive.append(self)

    def postProcessLayer(self, layer: QgsMapLayer, context: QgsProcessingContext,  # noqa: N802 (Qt API)
                         feedback: QgsProcessingFeedback) -> None:
        if isinstance(layer, QgsVectorLayer) and layer.isValid():
            layer.setRenderer(categorized_renderer(self.class_names, self.colors))
            layer.triggerRepaint()
        if self in PolygonStylePostProcessor._alive:
            PolygonStylePostProcessor._alive.remove(self)


def style_polygons_on_load(context: QgsProcessingContext, destination: str, class_names: Sequence[str],
                           colors: Sequence[Sequence[int]]) -> bool:
    """Attach a :class:`PolygonStylePostProcessor` to the class polygons if Processing will load them."""
    if not colors or not context.willLoadLayerOnCompletion(destination):
        return False
    details = context.layerToLoadOnCompletionDetails(destination)
    details.setPostProcessor(PolygonStylePostProcessor(class_names, colors))
    return True
