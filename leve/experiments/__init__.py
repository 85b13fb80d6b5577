"""The thesis experiment grid as DVC experiments (grid.py) and the comparison tables built
from their metrics (report.py). Kept apart from leve/evaluation so that the eval stage does
not depend on them."""
