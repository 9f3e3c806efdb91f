"""The model layer: device choice, the embedded model's cache, loading, and generation backends."""

from bot.model.backend import Backend, GenerationParams, GenerationResult, Message
from bot.model.loader import LoadedModel, load_model

__all__ = ["Backend", "GenerationParams", "GenerationResult", "LoadedModel", "Message", "load_model"]
