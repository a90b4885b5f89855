"""The CNN classifier (equinox + optax): model, steps, training loop, run folder, predictions
beside dataset versions, and pictures."""

from hipsml.train.cnn._config import CNNConfig
from hipsml.train.cnn._model import ModelSpec, ResNet, augment, build_model, rotate_pixels
from hipsml.train.cnn._plots import plot_confusion, plot_curves
from hipsml.train.cnn._predict import cnn_prediction_names, predict_cnn, prediction_scores, read_cnn_predictions
from hipsml.train.cnn._results import CNN, CNNPredictions
from hipsml.train.cnn._run import load_cnn
from hipsml.train.cnn._steps import eval_step, train_step
from hipsml.train.cnn._train import CNNResult, train_cnn

__all__ = [
    "CNN",
    "CNNPredictions",
    "cnn_prediction_names",
    "CNNConfig",
    "CNNResult",
    "ModelSpec",
    "ResNet",
    "augment",
    "build_model",
    "eval_step",
    "load_cnn",
    "plot_confusion",
    "plot_curves",
    "predict_cnn",
    "prediction_scores",
    "read_cnn_predictions",
    "rotate_pixels",
    "train_cnn",
    "train_step",
]
