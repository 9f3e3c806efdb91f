"""The HTTP API: the answer pipeline, feedback, the knowledge base, and an OpenAI-compatible chat endpoint."""

from bot.http.app import create_app
from bot.http.config import HttpConfig
from bot.http.server import check_bind, serve

__all__ = ["HttpConfig", "check_bind", "create_app", "serve"]
