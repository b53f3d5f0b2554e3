"""The one training loop and what it owns: the fit context, the optimisation step,
checkpoints and distributed training."""

from aekit.training.context import DivergenceError, FitContext, LossTerms
from aekit.training.loop import ON_NAN, SCHEDULES, fit_model
from aekit.training.step import default_optimizer, train_step

__all__ = ["ON_NAN", "DivergenceError", "FitContext", "LossTerms", "SCHEDULES",
           "default_optimizer", "fit_model", "train_step"]
