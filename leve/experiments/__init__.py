"""The thesis experiment grid as DVC experiments (grid.py); their comparison tables are in
:mod:`leve.report.experiments`. Kept apart from leve/evaluation so the eval stage does not
depend on them."""
