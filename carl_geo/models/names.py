"""Names of every registered choice, without importing torch: the command line, the Lightning tasks
(``Literal`` arguments, so LightningCLI rejects a bad value when it parses the config), GEO-Bench and
the QGIS plugin build their option lists from these. The registries keyed by the same names are
:data:`carl_geo.models.config.CONFIGS`, :data:`carl_geo.models.segmentation.HEADS`,
:data:`carl_geo.inference.settings.OUTPUTS`, the trainers' modes and polygon training's modes (a test keeps
them equal).
"""

from typing import Literal, get_args

#: Backbone configurations (:func:`carl_geo.models.get_config`). ``tiny_polygons``: the tiny CARL as
#: polygon training builds it from scratch (patch 4, no position embeddings).
ConfigName = Literal["published", "tiny", "tiny_polygons"]
#: Segmentation heads (:class:`carl_geo.models.CARLSegmenter`).
HeadName = Literal["linear", "progressive", "upernet"]
#: How a Lightning task trains the backbone (:class:`carl_geo.trainers.CARLSegmentationTask`).
TaskMode = Literal["linear", "finetune", "scratch"]
#: How polygon training feeds the model (:class:`carl_geo.polygon_training.TrainingRecipe`): image chips,
#: single pixels, or chosen from the scene.
TrainingModeName = Literal["auto", "chips", "pixels"]
#: The candidate models polygon training scores on held-out polygons
#: (:data:`carl_geo.polygon_training.candidates.CANDIDATES`), and ``"auto"``: keep the best.
SelectName = Literal["auto", "rf", "rf_context", "carl", "carl_forest", "carl_mlp", "carl_ensemble"]

CONFIG_NAMES: tuple[str, ...] = get_args(ConfigName)
HEAD_NAMES: tuple[str, ...] = get_args(HeadName)
MODE_NAMES: tuple[str, ...] = get_args(TaskMode)
TRAINING_MODE_NAMES: tuple[str, ...] = get_args(TrainingModeName)
SELECT_NAMES: tuple[str, ...] = get_args(SelectName)
