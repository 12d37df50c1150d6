"""A stand-in for Hugging Face's OpenID provider, so the real sign-in runs offline.

On a Space with ``hf_oauth: true``, Gradio's ``/login/huggingface`` sends the browser to the
provider named by ``OPENID_PROVIDER_URL`` (authlib reads its ``/.well-known/openid-configuration``),
and ``/login/callback`` exchanges the code for tokens and keeps the ID token's claims in the
session cookie. This serves that protocol (authorization code flow, an RS256-signed ID token
with the nonce, a JWKS; joserfc, which authlib itself uses) on loopback, in a thread of the test process, for a bounded number of
requests; who signs in next is set with ``next_user``. Nothing else of Hugging Face is faked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.emulator.server import serve_in_thread

__all__ = ["OpenIDProvider", "run_openid_provider"]

CLIENT_ID = "retouch-test-client"
CLIENT_SECRET = "retouch-test-secret"
MAX_REQUESTS = 200


@dataclass
class OpenIDProvider:
    url: str = ""
    user: dict[str, str] = field(default_factory=dict)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048))

    def next_user(self, username: str, sub: str) -> None:
        """Who signs in at the next visit to the authorize page (a real provider would ask)."""
        self.user = {
            "sub": sub,
            "preferred_username": username,
            "name": username.title(),
            "profile": f"https://huggingface.co/{username}",
            "picture": "",
        }

    def environment(self) -> dict[str, str]:
        """What Spaces sets for an app whose front matter says ``hf_oauth: true``."""
        return {
            "OAUTH_CLIENT_ID": CLIENT_ID,
            "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "OAUTH_SCOPES": "openid profile",
            "OPENID_PROVIDER_URL": self.url,
        }

    def app(self) -> Starlette:
        async def discovery(_: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.url,
                    "authorization_endpoint": f"{self.url}/oauth/authorize",
                    "token_endpoint": f"{self.url}/oauth/token",
                    "userinfo_endpoint": f"{self.url}/oauth/userinfo",
                    "jwks_uri": f"{self.url}/oauth/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )

        async def authorize(request: Request) -> Response:
            query = request.query_params
            if query.get("client_id") != CLIENT_ID or not self.user:
                return JSONResponse({"error": "unauthorized_client"}, status_code=400)
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"user": dict(self.user), "nonce": query.get("nonce")}
            return RedirectResponse(
                f"{query['redirect_uri']}&{urlencode({'code': code, 'state': query['state']})}"
                if "?" in query["redirect_uri"]
                else f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}",
                status_code=302,
            )

        async def token(request: Request) -> Response:
            form = await request.form()
            grant = self.codes.pop(str(form.get("code")), None)
            if grant is None:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            now = int(time.time())
            claims = {
                **grant["user"],
                "iss": self.url,
                "aud": CLIENT_ID,
                "iat": now,
                "exp": now + 3600,
                **({"nonce": grant["nonce"]} if grant["nonce"] else {}),
            }
            header = {"alg": "RS256", "kid": self.key.thumbprint()}
            id_token = jwt.encode(header, claims, self.key)
            return JSONResponse(
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "id_token": id_token,
                }
            )

        async def jwks(_: Request) -> Response:
            public = self.key.as_dict(private=False)
            return JSONResponse(
                {"keys": [{**public, "kid": self.key.thumbprint(), "use": "sig", "alg": "RS256"}]}
            )

        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/oauth/authorize", authorize),
                Route("/oauth/token", token, methods=["POST"]),
                Route("/oauth/jwks", jwks),
            ]
        )

        async def bounded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.requests += 1
                if self.requests > MAX_REQUESTS:
                    await Response("too many requests for a test", status_code=503)(scope, receive, send)
                    return
            await app(scope, receive, send)

        return bounded  # type: ignore[return-value]  # an ASGI app, as uvicorn takes it


@contextmanager
def run_openid_provider() -> Iterator[OpenIDProvider]:
    """The provider on a free loopback port for the ``with`` block (at most ``MAX_REQUESTS``)."""
    provider = OpenIDProvider()
    with serve_in_thread(provider.app()) as url:
        provider.url = url
        yield provider
