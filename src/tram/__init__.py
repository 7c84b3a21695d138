"""Trạm: a self-hosted, OpenAI-compatible LLM API."""

__all__ = ["__version__"]

__version__ = "0.1.0"
