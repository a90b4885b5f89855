"""The end-to-end demo (``hipsml demo``): synthetic sky, dataset, brief SOM and CNN, and the report page."""

from hipsml.demo._run import DEMO_RECIPE, DEMO_SKY, run_demo

__all__ = ["run_demo", "DEMO_SKY", "DEMO_RECIPE"]
