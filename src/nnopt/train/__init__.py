"""Training: one fit() with TrainingTask (the loss) and Callbacks (events)."""

from nnopt.core.compute import predict, seed_everything
from nnopt.train.callbacks import BestCheckpoint, Callback, EarlyStopping, FitState, ProgressBar
from nnopt.train.fit import TrainConfig, evaluate, fit
from nnopt.train.task import ClassificationTask, TrainingTask

__all__ = ["BestCheckpoint", "Callback", "ClassificationTask", "EarlyStopping", "FitState",
           "ProgressBar", "TrainConfig", "TrainingTask", "evaluate", "fit", "predict",
           "seed_everything"]
