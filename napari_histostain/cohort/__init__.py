"""Cohorts on dask.distributed: `slides` (which slides, their names), `jobs` (one slide's work on a
worker), `summary` (the cohort summary files), `runner` (`run_cohort`, clusters)."""
