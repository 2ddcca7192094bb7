"""Who may use the HTTP API: consumers and their bearer tokens (``config/consumers.yaml``).

Every request that changes state (``/queue/claim``, ``/queue/ack``, ``/queue/release``) carries
``Authorization: Bearer TOKEN``. The token names the consumer: it claims, acks and releases for
that consumer only (401 without a valid token, 403 when a valid token asks for another
consumer). Reads need a token too when ``require_token_for_reads`` says so; left unset, they do
exactly when the server listens on a non-loopback address. A server bound to a non-loopback
address with no consumer configured refuses to start (:func:`check_bind`).

Tokens are never held in clear: the file gives each consumer either ``token_sha256`` (the
SHA-256 of its token, hex) or ``token_env`` (an environment variable holding the token, hashed
when read). A presented token is hashed and compared with every consumer's digest in constant
time, so neither the answer nor its timing tells which consumer came closest.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONSUMERS_ENV = "DTMON_CONSUMERS"
DEFAULT_CONSUMERS_PATH = Path(__file__).resolve().parents[1] / "config" / "consumers.yaml"
MIN_TOKEN_CHARS = 24  # tokens read from the environment; secrets.token_urlsafe(32) gives 43


class AccessError(ValueError):
    """The consumers configuration cannot be used, or the server may not start as asked."""


class ConsumerEntry(BaseModel):
    """One consumer of ``config/consumers.yaml``: its name and where its token comes from."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    token_env: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_token_source(self) -> ConsumerEntry:
        if (self.token_sha256 is None) == (self.token_env is None):
            raise ValueError("give exactly one of token_sha256 and token_env")
        return self


class ConsumersFile(BaseModel):
    """Schema of ``config/consumers.yaml``."""

    model_config = ConfigDict(extra="forbid")

    require_token_for_reads: bool | None = None
    consumers: list[ConsumerEntry] = Field(default_factory=list)


@dataclass(frozen=True)
class Access:
    """The consumers' token digests, and whether reads need a token too."""

    digests: Mapping[str, bytes]  # consumer name -> SHA-256 of its token
    reads_need_token: bool = False

    def consumer_of(self, token: str) -> str | None:
        """The consumer whose token this is, or None; every digest is compared, in constant
        time."""
        presented = token_digest(token)
        found = None
        for name, digest in self.digests.items():
            if hmac.compare_digest(presented, digest):
                found = name
        return found


def token_digest(token: str) -> bytes:
    """The SHA-256 of a token, as stored and compared."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def consumers_path(path: Path | None = None) -> Path | None:
    """``path``, else ``$DTMON_CONSUMERS``, else the repository's config/consumers.yaml if it
    exists (None: no consumer configured)."""
    if path is not None:
        return path
    configured = os.environ.get(CONSUMERS_ENV, "").strip()
    if configured:
        return Path(configured)
    return DEFAULT_CONSUMERS_PATH if DEFAULT_CONSUMERS_PATH.exists() else None


def load_access(path: Path | None, host: str, environ: Mapping[str, str] = os.environ) -> Access:
    """The access rules of a server listening on ``host``, from the consumers file at ``path``
    (None: no consumers); raises :class:`AccessError` with a one-line reason."""
    settings = _read_consumers_file(path) if path is not None else ConsumersFile()
    digests: dict[str, bytes] = {}
    for entry in settings.consumers:
        if entry.name in digests:
            raise AccessError(f"{path}: consumer {entry.name!r} is listed twice")
        digests[entry.name] = _entry_digest(entry, path, environ)
    if len(set(digests.values())) < len(digests):
        raise AccessError(f"{path}: two consumers share one token")
    reads = settings.require_token_for_reads
    return Access(digests, reads_need_token=not is_loopback(host) if reads is None else reads)


def _read_consumers_file(path: Path) -> ConsumersFile:
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or {}
        return ConsumersFile.model_validate(raw)
    except OSError as exc:
        raise AccessError(f"cannot read the consumers file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise AccessError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AccessError(f"{path}: {where}: {first['msg']}") from exc


def _entry_digest(entry: ConsumerEntry, path: Path | None, environ: Mapping[str, str]) -> bytes:
    if entry.token_sha256 is not None:
        return bytes.fromhex(entry.token_sha256)
    token = environ.get(entry.token_env or "", "")
    if len(token) < MIN_TOKEN_CHARS:
        state = "is not set" if not token else f"holds fewer than {MIN_TOKEN_CHARS} characters"
        raise AccessError(f"{path}: the token of consumer {entry.name!r} (${entry.token_env}) "
                          f"{state}")
    return token_digest(token)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def check_bind(host: str, access: Access) -> None:
    """Refuse to serve beyond this machine when no consumer has a token."""
    if not is_loopback(host) and not access.digests:
        raise AccessError(
            f"refusing to listen on {host}: no consumer tokens are configured, so anyone who "
            f"can reach the port could claim the queue's work (configure consumers in "
            f"config/consumers.yaml or ${CONSUMERS_ENV}, or listen on 127.0.0.1)"
        )


# --- FastAPI dependencies ----------------------------------------------------------------------

bearer = HTTPBearer(
    scheme_name="consumerToken",
    description="The token of a consumer configured in config/consumers.yaml. Required for "
    "claim, ack and release; for reads only when the server requires it.",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticated_consumer(request: Request, credentials: Credentials) -> str:
    """The consumer named by the request's bearer token; 401 without a valid one (async: a
    hash and a comparison, not worth a trip to the thread pool)."""
    if credentials is None:
        raise _unauthorized("this request needs an Authorization: Bearer token")
    consumer = request.app.state.access.consumer_of(credentials.credentials)
    if consumer is None:
        raise _unauthorized("the bearer token is not valid")
    return consumer


Consumer = Annotated[str, Depends(authenticated_consumer)]


def acting_as(consumer: str, asked: str | None) -> str:
    """The consumer a write acts for: the token's own; 403 when the body names another."""
    if asked is not None and asked != consumer:
        raise HTTPException(403, f"this token belongs to consumer {consumer!r}, "
                                 f"not {asked[:100]!r}")
    return consumer
