"""tokensmith's OAuth 2.0 endpoints, driven by Authlib (a client library
that knows nothing of tokensmith). Run by scripts/oauth-interop, which
starts the server and sets:

  TS_ISSUER        the issuer (http://127.0.0.1:PORT)
  TS_SECRET        an API key of client "shop" (scopes chat, read:orders)
  TS_SIGNER_PEM    the private key (P-256 PEM) of client "signer", whose
                   public JWK is in the config (private_key_jwt)

`python authlib_interop.py jwk PEM` prints that public JWK as a TOML
inline table, for the script to write into the config.
"""

import os
import sys
import time

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError
from joserfc.jwk import ECKey
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oidc.discovery import OpenIDProviderMetadata

PASSED = []
FAILED = []


def case(fn):
    """Runs one case, recording its outcome; never stops the run."""
    try:
        fn()
        PASSED.append(fn.__name__)
        print(f"ok - {fn.__name__}")
    except Exception as e:  # noqa: BLE001 - every failure is reported
        FAILED.append(fn.__name__)
        print(f"not ok - {fn.__name__}: {type(e).__name__}: {e}")
    return fn


def public_jwk_toml(pem_path):
    with open(pem_path, "rb") as f:
        jwk = ECKey.import_key(f.read()).as_dict(private=False)
    members = ", ".join(f'{k} = "{jwk[k]}"' for k in ("kty", "crv", "x", "y"))
    return "{ " + members + " }"


if len(sys.argv) == 3 and sys.argv[1] == "jwk":
    print(public_jwk_toml(sys.argv[2]))
    sys.exit(0)

ISSUER = os.environ["TS_ISSUER"]
SECRET = os.environ["TS_SECRET"]
SIGNER_PEM = open(os.environ["TS_SIGNER_PEM"], "rb").read()
META = requests.get(f"{ISSUER}/.well-known/oauth-authorization-server", timeout=5).json()
TOKEN = META["token_endpoint"]


def validate_each(metadata, expected_failures):
    """Every validator of Authlib's metadata class, one by one: all must
    pass but those in `expected_failures` (what a server without an
    authorization endpoint cannot honestly claim), which must fail."""
    failures = {}
    for key in metadata.REGISTRY_KEYS:
        try:
            getattr(metadata, f"validate_{key}")()
        except ValueError as e:
            failures[key] = str(e)
    assert set(failures) == set(expected_failures), failures


@case
def rfc8414_metadata_validates():
    assert META["issuer"] == ISSUER
    assert "client_credentials" in META["grant_types_supported"]
    # No authorization endpoint, so no response type: [] is the honest
    # answer, and Authlib requires a non-empty list.
    assert META["response_types_supported"] == []
    validate_each(AuthorizationServerMetadata(META), {"response_types_supported"})


@case
def openid_configuration_validates():
    doc = requests.get(f"{ISSUER}/.well-known/openid-configuration", timeout=5).json()
    validate_each(OpenIDProviderMetadata(doc), {"response_types_supported"})


def fetch(method, scope="chat"):
    client = OAuth2Session("shop", SECRET, token_endpoint_auth_method=method, scope=scope)
    return client, client.fetch_token(TOKEN, grant_type="client_credentials")


@case
def client_credentials_with_client_secret_basic():
    _, token = fetch("client_secret_basic")
    assert token["token_type"] == "Bearer", token
    assert token["scope"] == "chat", token
    assert token["expires_in"] > 0


@case
def client_credentials_with_client_secret_post():
    _, token = fetch("client_secret_post", scope="chat read:orders")
    assert token["scope"] == "chat read:orders", token


@case
def a_wrong_secret_is_invalid_client():
    client = OAuth2Session("shop", "sk_live_wrong", token_endpoint_auth_method="client_secret_basic")
    try:
        client.fetch_token(TOKEN, grant_type="client_credentials")
    except OAuthError as e:
        assert e.error == "invalid_client", e
        return
    raise AssertionError("a token for a wrong secret")


@case
def a_scope_beyond_the_policy_is_invalid_scope():
    try:
        fetch("client_secret_basic", scope="admin")
    except OAuthError as e:
        assert e.error == "invalid_scope", e
        return
    raise AssertionError("a token for a scope the client may not have")


def signer_session():
    # Authlib's assertions live an hour by default; tokensmith accepts at
    # most five minutes. A fresh auth object per request: Authlib stores the
    # jti it generates in the claims dict it was given, and tokensmith
    # refuses a jti seen before.
    auth = PrivateKeyJWT(TOKEN, claims={"exp": int(time.time()) + 120}, alg="ES256")
    # A PEM given as text is read as an RSA key: an EC key goes as a key object.
    key = ECKey.import_key(SIGNER_PEM)
    client = OAuth2Session("signer", key, token_endpoint_auth_method="private_key_jwt", scope="s")
    client.register_client_auth_method(auth)
    return client, auth


@case
def client_credentials_with_private_key_jwt():
    client, _ = signer_session()
    token = client.fetch_token(TOKEN, grant_type="client_credentials")
    assert token["scope"] == "s", token


@case
def a_replayed_assertion_is_invalid_client():
    # The same auth object signs the same jti twice (see signer_session).
    client, _ = signer_session()
    client.fetch_token(TOKEN, grant_type="client_credentials")
    try:
        client.fetch_token(TOKEN, grant_type="client_credentials")
    except OAuthError as e:
        assert e.error == "invalid_client", e
        return
    raise AssertionError("a replayed assertion was accepted")


@case
def introspection_then_revocation():
    client, token = fetch("client_secret_basic")
    access = token["access_token"]
    r = client.introspect_token(META["introspection_endpoint"], token=access)
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["active"] is True, info
    assert info["client_id"] == "shop" and info["sub"] == "shop", info
    assert info["scope"] == "chat", info
    r = client.revoke_token(META["revocation_endpoint"], token=access, token_type_hint="access_token")
    assert r.status_code == 200, r.text
    info = client.introspect_token(META["introspection_endpoint"], token=access).json()
    assert info == {"active": False}, info


@case
def introspection_with_private_key_jwt_sees_only_its_own_tokens():
    _, token = fetch("client_secret_basic")
    client, _ = signer_session()
    info = client.introspect_token(META["introspection_endpoint"], token=token["access_token"]).json()
    assert info == {"active": False}, info


print(f"{len(PASSED)} passed, {len(FAILED)} failed")
sys.exit(1 if FAILED else 0)
