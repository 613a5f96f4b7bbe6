"""Prediction results and their files: maps on the tile lattice, tile tables and every export.

`maps` (`PredictionMaps`: per-tile results the viewer shows and exports read), `tile_table` (the one
tile-table schema and writer), `prediction_files` (<slide>.prediction.json + tiles.csv), `geojson`
(QuPath), `heatmap_tiff` (pyramidal OME-TIFF), `report` (JSON + PNG), `export` (all of them).
"""
