"""Defaults shared by prediction, training, IHC quantification and the widget."""

from __future__ import annotations

#: Model tiles: side in pixels and resolution (um/px) of the bundled models.
TILE_SIZE = 224
TILE_MPP = 1.0
#: Smallest tissue fraction of a tile that is predicted.
MIN_TISSUE = 0.25
#: Most tissue tiles predicted on one slide (a larger grid means a wrong mpp or --tile-mpp; the
#: cap can be raised: CLI --max-tiles, API PredictOptions(max_tiles=...)).
MAX_TILES = 200_000
#: Tiles per encoder batch and tile reader threads.
BATCH_SIZE = 32
READER_THREADS = 2
#: ImageNet normalisation of the bundled EfficientNet-Lite0 encoder.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
