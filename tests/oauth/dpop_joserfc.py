"""DPoP proofs (RFC 9449) built by hand with joserfc, for tests/suite/dpop.rs.

Line-delimited JSON on stdin and stdout, as tests/browser/dpop-proofs.mjs:
the first line {"alg": "ES256"} makes a key and answers {"jkt": ...}; every
later line {"htm", "htu", "accessToken"?} answers {"proof": ...} by that key.
"""
import base64
import hashlib
import json
import secrets
import sys
import time

from joserfc import jws
from joserfc.jwk import ECKey, RSAKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


key = None
alg = None
for line in sys.stdin:
    msg = json.loads(line)
    if "alg" in msg:
        alg = msg["alg"]
        key = ECKey.generate_key("P-256") if alg == "ES256" else RSAKey.generate_key(2048)
        print(json.dumps({"jkt": key.thumbprint()}), flush=True)
        continue
    public = {k: v for k, v in key.as_dict(private=False).items() if k in ("kty", "crv", "x", "y", "n", "e")}
    claims = {"jti": secrets.token_urlsafe(16), "htm": msg["htm"], "htu": msg["htu"], "iat": int(time.time())}
    if msg.get("accessToken"):
        claims["ath"] = b64(hashlib.sha256(msg["accessToken"].encode()).digest())
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": public}
    proof = jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])
    print(json.dumps({"proof": proof}), flush=True)
