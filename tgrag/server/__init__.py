"""``tgrag serve``: an OpenAI-compatible HTTP API over a tgrag store (extra: ``tgrag[server]``).

``create_app(rag, settings)`` builds the FastAPI app; ``ServerSettings`` configures it. See
docs/server.md for the endpoints, the ``tgrag`` extension fields, auth, limits and errors.
"""

from .app import create_app
from .config import ServerSettings, load_api_keys

__all__ = ["ServerSettings", "create_app", "load_api_keys"]
