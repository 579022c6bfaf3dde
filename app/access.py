"""Who may call a worker's web API: bearer tokens, loopback-only writes without one, CSRF guards.

Every request passes ``access_middleware`` before any view, Faust's own table and router
views included, so a view added later is guarded without remembering to be. The decision
itself (``judge``) is pure, for the unit tests.

- Writes (any method but GET/HEAD/OPTIONS) need ``API_TOKEN`` or ``ADMIN_TOKEN`` as
  ``Authorization: Bearer <token>`` (or as a Basic password): 401 without one, 403 with a
  wrong one. With no
  ``API_TOKEN`` set, writes are taken only from loopback clients.
- Reads are open unless ``API_READ_AUTH``; ``/health``, ``/metrics`` and the dashboard page
  always are (the page holds no data; what it fetches is guarded).
- Browsers: a write from a foreign ``Origin`` is refused (403) and a write body must be
  ``application/json`` (415), which a cross-site form or ``text/plain`` fetch cannot send
  without a CORS preflight, and no CORS headers are ever granted.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum

from aiohttp import web as aioweb
from pydantic import SecretStr

from core.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
OPEN_PATHS = frozenset({"/", "/health", "/metrics"})
ROLE_KEY = "access_role"


class Role(IntEnum):
    """What the caller proved: nothing, the processors' token, or the operators' token."""

    NONE = 0
    API = 1
    ADMIN = 2


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    api_token: SecretStr | None = None
    admin_token: SecretStr | None = None
    read_auth: bool = False
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            api_token=settings.api_token,
            admin_token=settings.admin_token,
            read_auth=settings.api_read_auth,
            allowed_origins=frozenset(settings.web_allowed_origins),
        )

    def role_of(self, token: str) -> Role | None:
        """The role a presented token proves; None when it matches no configured token."""
        for role, secret in ((Role.ADMIN, self.admin_token), (Role.API, self.api_token)):
            # Compared in constant time: a remote caller must not learn a prefix by timing.
            if secret is not None and hmac.compare_digest(token.encode(), secret.get_secret_value().encode()):
                return role
        return None


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """The parts of a request the decision depends on."""

    method: str
    path: str
    authorization: str | None = None
    origin: str | None = None
    fetch_site: str | None = None
    content_type: str = ""
    own_origin: str = ""
    remote: str | None = None
    host: str = ""


def presented_token(header: str | None) -> str | None:
    """The token in ``Authorization: Bearer <token>``, or the password of Basic credentials:
    clients that cannot set headers (detektr's ProcessorClient) carry it in their URL,
    ``http://processor:<token>@worker:6066``, which HTTP clients send as Basic."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (``localhost:6066``, ``[::1]:6066``)."""
    name = host.rpartition("]")[0].lstrip("[") if host.startswith("[") else host.partition(":")[0]
    return name.lower() == "localhost" or is_loopback(name)


def judge(policy: AccessPolicy, req: RequestFacts) -> Role | Refusal:
    """The caller's role when the request may go on, else why not."""
    write = req.method.upper() not in SAFE_METHODS
    if write:
        refusal = _cross_site(policy, req)
        if refusal is not None:
            return refusal
    role = _authenticate(policy, req)
    guarded = write or (policy.read_auth and req.path not in OPEN_PATHS)
    if guarded and isinstance(role, Refusal):
        return role
    if write and req.method.upper() in BODY_METHODS and req.content_type != "application/json":
        return Refusal(415, f"send the body as Content-Type: application/json, not {req.content_type or 'none'!r}")
    return role if isinstance(role, Role) else Role.NONE


def _cross_site(policy: AccessPolicy, req: RequestFacts) -> Refusal | None:
    origin = (req.origin or "").lower()
    if origin and origin != req.own_origin.lower() and origin not in policy.allowed_origins:
        return Refusal(403, f"cross-origin write from {origin[:100]!r} refused (WEB_ALLOWED_ORIGINS lists the allowed)")
    if not origin and req.fetch_site == "cross-site":
        return Refusal(403, "cross-site write refused")
    return None


def _authenticate(policy: AccessPolicy, req: RequestFacts) -> Role | Refusal:
    token = presented_token(req.authorization)
    configured = policy.api_token is not None or policy.admin_token is not None
    if token is not None and configured:
        role = policy.role_of(token)
        return role if role is not None else Refusal(403, "the bearer token is not valid here")
    # The Host check stops DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 is
    # same-origin to itself and connects from loopback, but its Host is evil.example.
    if policy.api_token is None and is_loopback(req.remote) and is_loopback_host(req.host):
        return Role.API
    if policy.api_token is None:
        return Refusal(
            401, "API_TOKEN is not set on this worker: only loopback clients may write; set API_TOKEN to allow others"
        )
    return Refusal(401, "send Authorization: Bearer <API_TOKEN>")


def admin_refusal(policy: AccessPolicy, role: Role, own_move: bool = False) -> Refusal | None:
    """Changing or deleting a registered processor: with ADMIN_TOKEN set only operators may,
    except what a processor does to itself (``own_move``): leave after its own draining
    heartbeat (the SDK's stop), or register again unchanged or after a failure (a restart)."""
    if policy.admin_token is None or role is Role.ADMIN or (own_move and role is Role.API):
        return None
    return Refusal(403, "changing or deleting a registered processor needs ADMIN_TOKEN")


def request_role(request: object) -> Role:
    """The role ``access_middleware`` found for this request (views get aiohttp's request)."""
    role = request.get(ROLE_KEY) if isinstance(request, aioweb.Request) else None
    return role if isinstance(role, Role) else Role.NONE


Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def access_middleware(policy: AccessPolicy) -> Callable[[aioweb.Request, Handler], Awaitable[aioweb.StreamResponse]]:
    @aioweb.middleware
    async def guard(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        verdict = judge(
            policy,
            RequestFacts(
                method=request.method,
                path=request.path,
                authorization=request.headers.get("Authorization"),
                origin=request.headers.get("Origin"),
                fetch_site=request.headers.get("Sec-Fetch-Site"),
                content_type=request.content_type if request.body_exists else "",
                own_origin=f"{request.scheme}://{request.host}",
                remote=request.remote,
                host=request.host,
            ),
        )
        if isinstance(verdict, Refusal):
            return refusal_response(verdict)
        request[ROLE_KEY] = verdict
        return await handler(request)

    return guard


def refusal_response(refusal: Refusal) -> aioweb.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="frame-orchestrator"'} if refusal.status == 401 else None
    return aioweb.json_response({"detail": refusal.detail}, status=refusal.status, headers=headers)
