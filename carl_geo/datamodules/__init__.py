"""Lightning data modules feeding the CARL tasks (samples carry ``wavelengths`` in µm)."""

from carl_geo.datamodules.chips import ChipFolderDataModule, ChipFolderDataset, ChipSource

__all__ = ["ChipFolderDataModule", "ChipFolderDataset", "ChipSource"]
