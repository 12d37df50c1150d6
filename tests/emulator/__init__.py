"""Provider emulator: a local HTTP server speaking the Gemini and OpenAI Images wire formats.

One Starlette app on one port serves both providers, so the Retouch client (Gemini
first, OpenAI as fallback) and the official ``google-genai`` and ``openai`` SDKs can be
tested without network:

- Gemini: ``POST /{v1beta,v1}/models/{model}:generateContent`` (and ``:streamGenerateContent``,
  the same answer in chunks: :mod:`.streaming`) for the four current image models, with the real service's validation (400/403/404 in the Google error
  envelope), stateless thought-signature checking of replayed model turns and
  deterministic image "edits" carrying provenance.
- OpenAI: ``POST /v1/images/edits`` (multipart, masks, several ``image[]``) and
  ``POST /v1/images/generations`` (JSON) for the current GPT image models; base URL
  ``{emulator}/v1``. Bearer auth (401/403), 404 ``model_not_found``, per-model
  validation (400 in the OpenAI envelope), deterministic outputs whose unmasked
  pixels are untouched, provenance and plausible ``usage``.
- Both: fault injection through prompt markers and one shared fault queue, with
  ``gemini:`` / ``openai:`` prefixes to fail one provider only; one request log.

- Start it: ``python -m tests.emulator --port 8765`` (see ``__main__``).
- In tests: the ``emulator_url`` / ``emulator`` fixtures and ``run_emulator`` (``fixtures``).
- Fault triggers: :mod:`tests.emulator.faults`. Control routes: :mod:`tests.emulator.app`.
- Gemini: :mod:`.request`, :mod:`.gemini`, :mod:`.signatures`, :mod:`.models`.
- OpenAI: :mod:`.openai_routes` (routes, log shape), :mod:`.openai_request` (validation),
  :mod:`.openai_images` (outputs, provenance), :mod:`.openai_models` (models, tokens),
  :mod:`.openai_errors`.
- Edits and provenance (``read_provenance`` reads PNG, JPEG and WebP): :mod:`tests.emulator.images`.
"""

from .app import DEFAULT_SECRET, create_app
from .images import read_provenance

__all__ = ["DEFAULT_SECRET", "create_app", "read_provenance"]
