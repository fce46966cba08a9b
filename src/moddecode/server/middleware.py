"""The app's outer edges: which Host names it answers to, request body size, and the API key."""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError


def _hostname(host_header: str) -> str | None:
    """'Example.COM:8000' -> 'example.com', '[::1]:8000' -> '::1'; None if malformed."""
    value = host_header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, rest = value[1:end], value[end + 1:]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    elif value.count(":") == 1:
        name, port = value.split(":")
        if not port.isdigit():
            return None
    else:
        name = value  # no port, or a bare IPv6 address
    return name.rstrip(".") or None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class TrustedHosts:
    """ASGI middleware: refuse (421) requests whose Host header names a host this server was not told about.

    Protects a keyless loopback server against DNS rebinding: a web page on attacker.example that
    re-points its name to 127.0.0.1 can reach the server, but its requests still say
    `Host: attacker.example`. Always allowed: localhost (and *.localhost) and IP addresses, which no
    attacker can rebind; plus each name in `allowed` ("*.example.com" for its subdomains, "*" for any).
    """

    def __init__(self, app, allowed: list[str] | tuple[str, ...] = ()):
        self.app = app
        self.allowed = [a.strip().lower().rstrip(".") for a in allowed]
        self.any = "*" in self.allowed

    def allows(self, name: str) -> bool:
        if self.any or name == "localhost" or name.endswith(".localhost") or is_ip(name) or name in self.allowed:
            return True
        return any(a.startswith("*.") and name.endswith(a[1:]) for a in self.allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.any:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        name = _hostname(header)
        if name is not None and self.allows(name):
            return await self.app(scope, receive, send)
        names = ", ".join(["localhost", "IP addresses", *self.allowed])
        error = ApiError(421, f"this server does not answer to the Host {header!r} (it answers to {names}); "
                              "to reach it by that name, start it with `--allowed-hosts NAME` "
                              "(or `server.allowed_hosts` in the policy set)", code="host_not_allowed")
        await error.response()(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for request bodies over `max_bytes`, declared (Content-Length) or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large().response()(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException passes through FastAPI's body reading unchanged to the error handlers.
                raise StarletteHTTPException(413, self._too_large().message)
            return message

        await self.app(scope, counted, send)

    def _too_large(self) -> ApiError:
        return ApiError(413, f"request body is larger than this server's limit of {self.max_bytes} bytes",
                        code="request_too_large")


def bearer_auth(api_key: str | None):
    """A dependency that requires `Authorization: Bearer <api_key>` (nothing when api_key is None)."""

    async def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "invalid or missing API key: send the header `Authorization: Bearer <key>`",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
    return check
