"""Training and evaluation of HistoStainAlign slide encoders on paired H&E / IHC cohorts.

Installed as `napari_histostain.training`. Modules: `manifest` (cohort CSV validation), `cache`
(per-slide tile-embedding cache), `sampling` (paired bags, masking), `losses`, `trainer`
(k-fold cross-validation), `evaluate` (metrics with bootstrap CIs, probe, alignment, plots), `cli`.
Importing this package is cheap; torch is imported by the modules that need it.
"""
