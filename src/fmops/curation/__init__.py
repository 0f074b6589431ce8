"""Dataset curation: composable steps (dedup, PII, quality filters, decontamination, split) declared in
a YAML recipe and run as the `datasets.curate` job, one new dataset version per step.

Steps are plugins: the built-ins and third parties' register under the `fmops.curation` entry points.
"""

from fmops.curation.base import Batch, Source, Step, StepContext, StepOptions, StepReport
from fmops.curation.recipe import PlannedStep, Recipe, load_recipe
from fmops.curation.registry import register, steps, unregister

__all__ = [
    "Batch",
    "PlannedStep",
    "Recipe",
    "Source",
    "Step",
    "StepContext",
    "StepOptions",
    "StepReport",
    "load_recipe",
    "register",
    "steps",
    "unregister",
]
