"""Provider emulator: a local HTTP server speaking the Gemini Developer API wire format.

It implements ``POST /{v1beta,v1}/models/{model}:generateContent`` for the four
current image models, with the real service's validation (400/403/404 in the Google
error envelope), stateless thought-signature checking of replayed model turns,
deterministic image "edits" carrying provenance, and fault injection. It lets the
Retouch client and the official ``google-genai`` SDK be tested without network.

- Start it: ``python -m tests.emulator --port 8765`` (see ``__main__``).
- In tests: the ``emulator_url`` / ``emulator`` fixtures and ``run_emulator`` (``fixtures``).
- Fault triggers: :mod:`tests.emulator.faults`. Control routes: :mod:`tests.emulator.app`.
- Signatures: :mod:`tests.emulator.signatures`. Edits and provenance: :mod:`tests.emulator.images`.
"""

from .app import DEFAULT_SECRET, create_app
from .images import read_provenance

__all__ = ["DEFAULT_SECRET", "create_app", "read_provenance"]
