"""OpenAI's Images API (the fallback): wire translation, HTTP client, model catalogue and prices."""

from chat.providers.openai.client import OpenAIImagesClient

__all__ = ["OpenAIImagesClient"]
