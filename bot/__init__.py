"""domainbot: configuration, the model layer, chat sessions and the front ends."""

__version__ = "0.1.0"
