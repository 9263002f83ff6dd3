"""Training data: the built-in worlds (``kinetoscope.data.worlds``) and folders of own clips."""

from kinetoscope.data.folder import ClipFolderDataset

__all__ = ["ClipFolderDataset"]
