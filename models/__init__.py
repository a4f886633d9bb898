"""Architectures, pretrained-weight loading and the checkpoint/model-card format."""

from models.checkpoint import ISIC_CLASSES, ModelCard, load_checkpoint, read_checkpoint, save_checkpoint
from models.errors import InputError
from models.net import Classifier, Features
from models.registry import build_model, count_parameters, list_models, register_model

__all__ = [
    "ISIC_CLASSES",
    "Classifier",
    "Features",
    "InputError",
    "ModelCard",
    "build_model",
    "count_parameters",
    "list_models",
    "load_checkpoint",
    "read_checkpoint",
    "register_model",
    "save_checkpoint",
]
