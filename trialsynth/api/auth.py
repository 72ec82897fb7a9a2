"""Bearer JWT authentication: who calls, and for which tenant.

Tokens are verified with the one algorithm the settings name (``api.jwt_algorithm``; a token that
says otherwise, ``none`` included, is refused): RS256 against the public keys of a JWKS file
(``api.jwks_path``, key chosen by the token's ``kid``), or HS256 with a shared secret, which is only
allowed for the embedded default. The HS256 secret comes from the env var named by
``api.jwt_secret_env``, else from a key file created on first use (0600, 32 random bytes) under
``<data dir's parent>/.trialsynth-keys/api-hs256.key``, so ``trialsynth api token`` can mint tokens
for ``make api``.

Required claims: ``exp``, ``aud`` (= ``api.audience``), ``iss`` (= ``api.issuer``), ``sub`` and
``tenant`` (a valid tenant name). ``scope`` (space separated) grants extra rights: ``synth:approve``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from trialsynth.api.problems import ProblemError
from trialsynth.names import validate_name
from trialsynth.settings import Settings

TENANT_CLAIM = "tenant"
LEEWAY_S = 30  # clock skew tolerated on exp / nbf / iat
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Principal:
    """The caller: the token's subject, its tenant (the only tenant it can see) and its scopes."""

    subject: str
    tenant: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ProblemError(403, "insufficient-scope", "Insufficient scope",
                               f"this request needs the token scope {scope!r}",
                               headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})


def is_embedded(settings: Settings) -> bool:
    """True for the embedded default (SQLite Dagster storage and API store): the only place for HS256."""
    store = settings.api.store_url
    return settings.dagster_storage == "sqlite" and (not store or store.startswith("sqlite"))


def hs256_secret(settings: Settings) -> bytes:
    """The HS256 secret: ``$<api.jwt_secret_env>``, else the local key file (created 0600 on first use)."""
    value = os.environ.get(settings.api.jwt_secret_env)
    if value:
        secret = value.encode()
    else:
        path = settings.data_path.parent / ".trialsynth-keys" / "api-hs256.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        secret = path.read_text().strip().encode()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"${settings.api.jwt_secret_env}: the HS256 secret must have at least {MIN_SECRET_BYTES} bytes")
    return secret


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "invalid-token", "Unauthorized", detail,
                        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'})


class TokenVerifier:
    """Verifies bearer tokens with the settings' algorithm and keys (read once, at construction)."""

    def __init__(self, settings: Settings) -> None:
        api = settings.api
        self.algorithm, self.audience, self.issuer = api.jwt_algorithm, api.audience, api.issuer
        if api.jwt_algorithm == "HS256":
            if not is_embedded(settings):
                raise ValueError("api.jwt_algorithm HS256 is only allowed for the embedded default; "
                                 "set api.jwt_algorithm RS256 and api.jwks_path")
            self._keys: dict[str | None, object] = {None: hs256_secret(settings)}
        else:
            path = api.jwks_path if api.jwks_path.is_absolute() else settings.root / api.jwks_path
            jwks = jwt.PyJWKSet.from_json(Path(path).read_text())
            self._keys = {k.key_id: k.key for k in jwks.keys}
            if len(self._keys) == 1:
                self._keys[None] = next(iter(self._keys.values()))

    def verify(self, authorization: str | None) -> Principal:
        """``Authorization`` header -> Principal, or a 401 problem saying what is wrong."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("an 'Authorization: Bearer <token>' header is required")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != self.algorithm:
                raise _unauthorized(f"token algorithm {header.get('alg')!r} is not accepted")
            key = self._keys.get(header.get("kid")) if self.algorithm == "RS256" else self._keys[None]
            if key is None:
                raise _unauthorized(f"no key with kid {header.get('kid')!r}")
            claims = jwt.decode(token, key, algorithms=[self.algorithm], audience=self.audience, issuer=self.issuer,
                                leeway=LEEWAY_S, options={"require": ["exp", "aud", "iss", "sub", TENANT_CLAIM]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise _unauthorized(f"the token's audience is not {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise _unauthorized(f"the token's issuer is not {self.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _unauthorized(f"the token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"the token is not valid: {exc}") from None
        try:
            tenant = validate_name(claims[TENANT_CLAIM], "tenant")
        except ValueError:
            raise _unauthorized("the token's tenant claim is not a valid tenant name") from None
        scopes = frozenset(str(claims.get("scope", "")).split())
        return Principal(str(claims["sub"]), tenant, scopes)


def mint_token(settings: Settings, tenant: str, subject: str, *, scopes: tuple[str, ...] = (),
               ttl_s: int = 3600, audience: str | None = None, now: float | None = None) -> str:
    """An HS256 token for the embedded default (``trialsynth api token``, tests, the load test)."""
    now = time.time() if now is None else now
    claims = {"sub": subject, TENANT_CLAIM: validate_name(tenant, "tenant"), "aud": audience or settings.api.audience,
              "iss": settings.api.issuer, "iat": int(now), "exp": int(now + ttl_s)}
    if scopes:
        claims["scope"] = " ".join(scopes)
    return jwt.encode(claims, hs256_secret(settings), algorithm="HS256")


def jwks_document(public_keys: dict[str, object]) -> str:
    """A JWKS file body for RSA public keys ``{kid: key}`` (tests and operators' tooling)."""
    keys = []
    for kid, key in public_keys.items():
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
        keys.append(jwk | {"kid": kid, "use": "sig", "alg": "RS256"})
    return json.dumps({"keys": keys})
