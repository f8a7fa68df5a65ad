// tokensmith's OAuth 2.0 endpoints, driven by openid-client v6 (a client
// library that knows nothing of tokensmith). Run by scripts/oauth-interop,
// which starts the server and sets TS_ISSUER, TS_SECRET (an API key of
// client "shop") and TS_SIGNER_PEM (the P-256 key of client "signer").
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as client from "openid-client";

const issuer = new URL(process.env.TS_ISSUER);
const secret = process.env.TS_SECRET;
const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token";
// The server runs on loopback over plain http.
const insecure = { execute: [client.allowInsecureRequests] };

async function shop(auth = client.ClientSecretBasic(secret), algorithm = "oidc") {
  return client.discovery(issuer, "shop", undefined, auth, { ...insecure, algorithm });
}

test("discovery (OpenID and RFC 8414) names the endpoints", async () => {
  for (const algorithm of ["oidc", "oauth2"]) {
    const config = await shop(undefined, algorithm);
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, process.env.TS_ISSUER);
    assert.equal(meta.token_endpoint, `${process.env.TS_ISSUER}/oauth2/token`);
    assert.ok(meta.grant_types_supported.includes(TOKEN_EXCHANGE));
  }
});

test("clientCredentialsGrant with client_secret_basic and client_secret_post", async () => {
  for (const auth of [client.ClientSecretBasic(secret), client.ClientSecretPost(secret)]) {
    const config = await shop(auth);
    const tokens = await client.clientCredentialsGrant(config, { scope: "chat read:orders" });
    assert.equal(tokens.token_type, "bearer");
    assert.equal(tokens.scope, "chat read:orders");
    assert.ok(tokens.expiresIn() > 0);
  }
});

test("a wrong secret is invalid_client, with a Basic challenge", async () => {
  const config = await shop(client.ClientSecretBasic("sk_live_wrong"));
  // openid-client reports a 401 with WWW-Authenticate as a challenge error.
  const e = await client.clientCredentialsGrant(config).then(() => null, (e) => e);
  assert.ok(e, "a token for a wrong secret");
  assert.equal(e.status, 401);
  assert.equal(e.cause[0].scheme, "basic");
  assert.equal((await e.response.json()).error, "invalid_client");
  const post = await shop(client.ClientSecretPost("sk_live_wrong"));
  await assert.rejects(client.clientCredentialsGrant(post), (e) => e.error === "invalid_client");
});

test("token exchange (genericGrantRequest): an access token, narrowed", async () => {
  const config = await shop();
  const subject = await client.clientCredentialsGrant(config, { scope: "chat read:orders" });
  const exchanged = await client.genericGrantRequest(config, TOKEN_EXCHANGE, {
    subject_token: subject.access_token,
    subject_token_type: ACCESS_TOKEN,
    scope: "chat",
  });
  assert.equal(exchanged.issued_token_type, ACCESS_TOKEN);
  assert.equal(exchanged.scope, "chat");
  const info = await client.tokenIntrospection(config, exchanged.access_token);
  assert.equal(info.active, true);
  assert.equal(info.sub, "shop");
});

test("token exchange of a visitor token: single use, with a refresh token", async () => {
  const config = await shop();
  const minted = await fetch(new URL("/v1/tokens", issuer), {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${secret}` },
    body: JSON.stringify({ sub: "visitor-1", purpose: "exchange", scopes: ["chat"] }),
  });
  assert.equal(minted.status, 200);
  const visitor = (await minted.json()).token;
  const params = { subject_token: visitor, subject_token_type: ACCESS_TOKEN };
  const first = await client.genericGrantRequest(config, TOKEN_EXCHANGE, params);
  assert.ok(first.refresh_token);
  const info = await client.tokenIntrospection(config, first.access_token);
  assert.equal(info.sub, "visitor-1");
  await assert.rejects(client.genericGrantRequest(config, TOKEN_EXCHANGE, params), (e) => e.error === "invalid_request");
  // The refresh token it came with rotates through refreshTokenGrant.
  const renewed = await client.refreshTokenGrant(config, first.refresh_token);
  assert.ok(renewed.refresh_token && renewed.refresh_token !== first.refresh_token);
});

test("private_key_jwt, introspection and revocation", async () => {
  const pem = readFileSync(process.env.TS_SIGNER_PEM, "utf8");
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s/g, ""), "base64");
  const key = await webcrypto.subtle.importKey("pkcs8", der, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  const config = await client.discovery(issuer, "signer", undefined, client.PrivateKeyJwt(key), insecure);
  const tokens = await client.clientCredentialsGrant(config, { scope: "s" });
  assert.equal(tokens.scope, "s");
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, true);
  await client.tokenRevocation(config, tokens.access_token);
  assert.equal((await client.tokenIntrospection(config, tokens.access_token)).active, false);
});
