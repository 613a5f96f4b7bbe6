"""The Qt widgets of the napari plugin (the only Qt code): the prediction dock widget and its
observed-IHC panel. Everything they compute comes from the rest of the package."""
