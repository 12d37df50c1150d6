"""Google Gemini (native image output): wire translation, HTTP client, model catalogue and prices."""

from chat.providers.gemini.client import GeminiClient

__all__ = ["GeminiClient"]
