"""H&E -> predicted IHC: tissue, tiling, tile encoders, the slide model and `predict_slide`.

`tissue` (tissue detection), `tiling` (the one `TileGrid` and its `TileLattice`), `tile_stream`
(tiles read ahead by threads), `stain_check` (H&E or IHC?), `encoders/` (tile encoders by name),
`slide_model` (HistoStainAlign's slide encoder), `model_files` (versioned model files),
`prediction` (`SlidePrediction`), `predict` (`predict_slide`), `region_predictor` (tiles on demand
for the viewer's visible region).
"""
