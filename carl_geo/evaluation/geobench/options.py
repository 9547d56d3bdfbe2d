"""Choices of the GEO-Bench runner, in a module without heavy imports (the CLI builds its
parser from them without loading torch)."""

from carl_geo.models.names import MODE_NAMES

#: Input normalisation: one mean/std per image (upstream) or GEO-Bench's per-band statistics.
NORMALIZATIONS = ("image", "band")
#: Band wavelengths as stored, or with the known m-eurosat / m-brick-kiln order corrected.
BAND_ORDERS = ("stored", "corrected")
#: Evaluation protocols: the Lightning tasks' modes (:data:`carl_geo.models.names.MODE_NAMES`) and k-NN.
MODES = (*MODE_NAMES, "knn")
#: ``--checkpoint random``: the random-init floor.
RANDOM = "random"
#: ``--spatial-init`` / ``--spectral-init`` default: upstream's initialisation for the config.
AUTO = "auto"
