// The SDK's timing logic in Node, no browser: fake timers (node:test's
// mock.timers, with Date), and an injected fetch that records every call.
//   node --test tests/browser/sdk.unit.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { sessionTokens, widgetAuth, TokenError, decodeClaims } from "../../sdk/tokensmith.js";

const T0 = 1_800_000_000_000; // the fake clock's start, in ms

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
/** A JWT-shaped token (unsigned: the SDK never verifies). */
const jwt = (claims) => `${b64({ alg: "RS256", typ: "JWT" })}.${b64(claims)}.c2ln`;

/** An answer as `fetch` resolves it; `body` a string is sent as is (not JSON). */
function reply(status, body, headers = {}) {
  return {
    ok: status >= 200 && status < 300,
    status,
    headers: new Headers(headers),
    json: async () => (typeof body == "string" ? JSON.parse(body) : body),
  };
}

/** A fetch that answers with `answer(url, init, n)` and records each call. */
function fakeFetch(answer) {
  const calls = [];
  const f = async (url, init = {}) => {
    calls.push({ url, init, at: Date.now(), body: init.body && JSON.parse(init.body) });
    return answer(url, init, calls.length);
  };
  f.calls = calls;
  return f;
}

/** Lets every settled promise run its callbacks (the fakes never do real I/O). */
async function flush() {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}

/** Advances the fake clock by `ms` in steps, flushing promises as timers fire. */
async function advance(t, ms, step = 100) {
  for (let done = 0; done < ms; done += step) {
    await flush(); // timers that pending promises are about to set
    t.mock.timers.tick(Math.min(step, ms - done));
    await flush();
  }
}

function fakeTime(t, now = T0) {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now });
}

/** A token answer issued now by a server whose clock reads `serverNow` (ms). */
function issued(ttl, { serverNow = Date.now(), sub = "alice", extra = {} } = {}) {
  const iat = Math.floor(serverNow / 1000);
  return { token: jwt({ sub, iat, exp: iat + ttl, jti: `j${Math.random()}` }), expires_in: ttl, expires_at: iat + ttl, ...extra };
}

/** Records the `error` events of `target`. */
function errorsOf(target) {
  const seen = [];
  target.addEventListener("error", (e) => seen.push(e.detail));
  return seen;
}

test("70-second TTL: the cached token until 60 s remain, then one refresh, never an expired token", async (t) => {
  fakeTime(t);
  const fetch = fakeFetch(() => reply(200, issued(70)));
  const session = sessionTokens({ url: "/api/widget-auth", fetch });
  const first = await session.get();
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].init.method, "POST");
  assert.equal(fetch.calls[0].init.credentials, "include");
  // 70 s minus a second of JWT date rounding, from when it was asked for.
  assert.equal(first.expiresAt, T0 + 69_000);
  await advance(t, 8_900);
  assert.equal((await session.get()).token, first.token, "more than 60 s remain: cached");
  assert.equal(fetch.calls.length, 1);
  await advance(t, 100);
  const second = await session.get();
  assert.notEqual(second.token, first.token, "60 s remain: refreshed");
  assert.equal(fetch.calls.length, 2);
  // Ten minutes of calls every half second: each token handed out is valid
  // (on the SDK's clock and by its own exp), and renewals stay 9 s apart.
  for (let i = 0; i < 1200; i++) {
    const { token, expiresAt } = await session.get();
    assert.ok(expiresAt - Date.now() > 60_000, "never less than refreshAhead left");
    assert.ok(decodeClaims(token).exp * 1000 > Date.now(), "never past its exp");
    await advance(t, 500, 500);
  }
  const gaps = fetch.calls.slice(1).map((c, i) => c.at - fetch.calls[i].at);
  assert.ok(gaps.every((g) => g >= 9_000 && g <= 9_500), `renewal gaps ${gaps}`);
  t.diagnostic(`requests: ${fetch.calls.length} in 10 min`);
});

test("a token shorter than refreshAhead is used for half its life, not refetched on every call", async (t) => {
  fakeTime(t);
  const fetch = fakeFetch(() => reply(200, issued(30)));
  const session = sessionTokens({ url: "/auth", fetch, refreshAhead: 60 });
  for (let i = 0; i < 600; i++) {
    const { expiresAt } = await session.get();
    assert.ok(expiresAt > Date.now());
    await advance(t, 100, 100);
  }
  // 60 s of calls every 100 ms; a renewal every 14.5 s.
  assert.equal(fetch.calls.length, 5);
});

test("ten concurrent get() and token() calls make one request", async (t) => {
  fakeTime(t);
  const auth = fakeFetch(async () => reply(200, issued(300)));
  const session = sessionTokens({ url: "/auth", fetch: auth });
  const got = await Promise.all(Array.from({ length: 10 }, () => session.get()));
  assert.equal(auth.calls.length, 1);
  assert.equal(new Set(got.map((g) => g.token)).size, 1);

  const ts = fakeFetch(async () => reply(200, issued(300, { sub: "guest:x", extra: { refresh_token: "r0" } })));
  const widget = widgetAuth({ issuer: "https://auth.test/", clientKey: "pk_1", fetch: ts });
  const tokens = await Promise.all(Array.from({ length: 10 }, () => widget.token()));
  assert.deepEqual(ts.calls.map((c) => c.url), ["https://auth.test/v1/guest"]);
  assert.deepEqual(ts.calls[0].body, { client_key: "pk_1" });
  assert.equal(ts.calls[0].init.credentials, "omit");
  assert.equal(new Set(tokens.map((g) => g.token)).size, 1);
  t.diagnostic(`requests: get() ${auth.calls.length}, token() ${ts.calls.length}`);
});

test("a device clock an hour off the server's does not matter with expires_in, nor with a Date header", async (t) => {
  fakeTime(t);
  const serverNow = T0 - 3_600_000; // the device is an hour ahead
  const stamp = (ms) => new Date(ms).toUTCString();
  const cases = {
    expires_in: () => reply(200, issued(300, { serverNow })),
    bare_token_with_date: () => reply(200, { token: issued(300, { serverNow }).token }, { date: stamp(serverNow) }),
    expires_at_with_date: () => {
      const { token, expires_at } = issued(300, { serverNow });
      return reply(200, { token, expires_at }, { date: stamp(serverNow) });
    },
  };
  for (const [name, answer] of Object.entries(cases)) {
    const fetch = fakeFetch(answer);
    const session = sessionTokens({ url: "/auth", fetch });
    const { expiresAt } = await session.get();
    assert.equal(expiresAt, Date.now() + 299_000, name);
    await advance(t, 238_000, 1_000);
    await session.get();
    assert.equal(fetch.calls.length, 1, `${name}: cached for 238 s`);
  }
  // No expires_in and no Date header: only the device clock is left, and
  // against it the token has expired; a clear error, not a loop.
  const fetch = fakeFetch(() => reply(200, { token: issued(300, { serverNow }).token }));
  const session = sessionTokens({ url: "/auth", fetch });
  const errors = errorsOf(session);
  await assert.rejects(session.get(), { code: "expired" });
  assert.equal(errors.length, 1);
});

test("an opaque token needs expires_in or the ttl option; a token without exp fails clearly", async (t) => {
  fakeTime(t);
  const opaque = fakeFetch(() => reply(200, { token: "opaque-123" }));
  const withTtl = sessionTokens({ url: "/auth", fetch: opaque, ttl: 120 });
  assert.equal((await withTtl.get()).expiresAt, T0 + 119_000);
  const noExp = fakeFetch(() => reply(200, { token: jwt({ sub: "alice", iat: T0 / 1000 }) }));
  const session = sessionTokens({ url: "/auth", fetch: noExp });
  const errors = errorsOf(session);
  await assert.rejects(session.get(), (e) => e instanceof TokenError && e.code === "no_expiry");
  assert.equal(errors[0].code, "no_expiry");
});

const badAnswers = {
  "non-JSON 200": [() => reply(200, "<html>hello</html>"), "bad_response", 200],
  "JSON without a token": [() => reply(200, { user: "alice" }), "bad_response", 200],
  "401 from the host": [() => reply(401, { error: "not_signed_in", error_description: "sign in" }), "not_signed_in", 401],
  "502 HTML page": [() => reply(502, "<h1>Bad gateway</h1>"), "http_error", 502],
  "token without exp": [() => reply(200, { token: jwt({ sub: "a" }) }), "no_expiry", 200],
  "network gone": [() => Promise.reject(new TypeError("Failed to fetch")), "network", 0],
};

for (const [name, [answer, code, status]] of Object.entries(badAnswers)) {
  test(`bad input (${name}): one error event and a rejection, then at most one retry per second`, async (t) => {
    fakeTime(t);
    t.mock.method(Math, "random", () => 0.5); // jitter: +25 %
    const fetch = fakeFetch(answer);
    const session = sessionTokens({ url: "/auth", fetch });
    const errors = errorsOf(session);
    await assert.rejects(session.get(), (e) => e.code === code && e.status === status);
    assert.deepEqual(errors.map((e) => [e.code, e.status]), [[code, status]]);
    // A caller that retries at once, in a loop, waits instead of looping.
    const retries = [];
    for (let i = 0; i < 50; i++) retries.push(session.get().catch((e) => e));
    await advance(t, 1_240, 10);
    assert.equal(fetch.calls.length, 1, "nothing before 1 s + jitter");
    await advance(t, 20, 10);
    assert.equal(fetch.calls.length, 2, "one retry, shared by every caller");
    const settled = await Promise.all(retries);
    assert.ok(settled.every((e) => e.code === code));
    assert.equal(errors.length, 2, "one event per attempt, not per caller");
  });
}

test("back-off doubles to 30 s with jitter, honours Retry-After, and clear() resets it", async (t) => {
  fakeTime(t);
  let r = 0;
  t.mock.method(Math, "random", () => [0, 0.999][r++ % 2]);
  const fetch = fakeFetch(() => reply(503, { error: "store_unavailable" }));
  const session = sessionTokens({ url: "/auth", fetch });
  errorsOf(session);
  // A caller that asks again as soon as each attempt fails.
  let stop = false;
  (async () => {
    while (!stop) await session.get().catch(() => {});
  })();
  await advance(t, 130_000, 250);
  stop = true;
  const gaps = fetch.calls.slice(1).map((c, i) => c.at - fetch.calls[i].at);
  // 1 s, 2 s (+50 % jitter), 4 s, 8 s (+50 %), 16 s, 30 s (+50 %, capped base), ...
  const expect = [1000, 3000, 4000, 12000, 16000, 45000, 30000].map((ms) => Math.ceil(ms / 250) * 250);
  assert.deepEqual(gaps.map((g) => Math.ceil(g / 250) * 250), expect);

  const limited = fakeFetch(() => reply(429, { error: "rate_limited" }, { "retry-after": "7" }));
  const s2 = sessionTokens({ url: "/auth", fetch: limited });
  await assert.rejects(s2.get(), { code: "rate_limited", retryAfter: 7 });
  const again = s2.get().catch(() => {});
  await advance(t, 6_900);
  assert.equal(limited.calls.length, 1, "Retry-After: 7 s");
  await advance(t, 200);
  await again;
  assert.equal(limited.calls.length, 2);
  s2.clear();
  await s2.get().catch(() => {});
  assert.equal(limited.calls.length, 3, "clear(): no wait");
});

test("widgetAuth refreshes ahead of expiry with one refresh in flight, each refresh token presented once", async (t) => {
  fakeTime(t);
  let n = 0;
  const fetch = fakeFetch(async (url) => {
    await new Promise((r) => setTimeout(r, 50)); // the refresh takes a while
    return reply(200, issued(120, { sub: "guest:g1", extra: { refresh_token: `r${n++}` } }));
  });
  const widget = widgetAuth({ issuer: "https://auth.test", clientKey: "pk_1", fetch });
  const pending = widget.token();
  await advance(t, 50, 50);
  const first = await pending;
  assert.equal(fetch.calls.length, 1);
  for (let round = 1; round <= 5; round++) {
    await advance(t, 59_000 - 50, 1_000); // 119 s - 60 s: due
    const during = Array.from({ length: 10 }, () => widget.token());
    await advance(t, 50, 10);
    const got = await Promise.all(during);
    assert.equal(new Set(got.map((g) => g.token)).size, 1);
    assert.notEqual(got[0].token, first.token);
  }
  const paths = fetch.calls.map((c) => new URL(c.url).pathname);
  assert.deepEqual(paths, ["/v1/guest", ...Array(5).fill("/v1/refresh")]);
  const presented = fetch.calls.slice(1).map((c) => c.body.refresh_token);
  assert.deepEqual(presented, ["r0", "r1", "r2", "r3", "r4"], "each once, always the newest");
});

test("a revoked family: a guest bootstraps again; an exchange asks the host again, and fires error when the host says no", async (t) => {
  fakeTime(t);
  const revoked = () => reply(401, { error: "invalid_refresh_token", error_description: "refresh token refused" });
  const guestFetch = fakeFetch((url, _init, n) => (url.endsWith("/v1/refresh") ? revoked() : reply(200, issued(120, { sub: `guest:${n}`, extra: { refresh_token: `g${n}` } }))));
  const guest = widgetAuth({ issuer: "https://auth.test", clientKey: "pk_1", fetch: guestFetch });
  const guestErrors = errorsOf(guest);
  const before = await guest.token();
  await advance(t, 59_000, 1_000);
  const after = await guest.token();
  assert.notEqual(decodeClaims(after.token).sub, decodeClaims(before.token).sub, "a new guest");
  assert.deepEqual(guestFetch.calls.map((c) => new URL(c.url).pathname), ["/v1/guest", "/v1/refresh", "/v1/guest"]);
  assert.equal(guestErrors.length, 0);

  let hostSession = true;
  const visitorToken = async () => {
    if (!hostSession) throw Object.assign(new Error("HTTP 401"), { status: 401 });
    return `visitor-${Math.random()}`;
  };
  const exFetch = fakeFetch((url, init, n) => (url.endsWith("/v1/refresh") ? revoked() : reply(200, issued(120, { extra: { refresh_token: `e${n}` } }))));
  const widget = widgetAuth({ issuer: "https://auth.test", clientKey: "pk_1", visitorToken, fetch: exFetch });
  const errors = errorsOf(widget);
  await widget.token();
  await advance(t, 59_000, 1_000);
  await widget.token(); // host session alive: a fresh visitor token, exchanged
  const exchanged = exFetch.calls.filter((c) => c.url.endsWith("/v1/exchange")).map((c) => c.body.token);
  assert.equal(new Set(exchanged).size, 2, "never the same visitor token twice");
  hostSession = false;
  await advance(t, 59_000, 1_000);
  await assert.rejects(widget.token(), { code: "visitor_token", status: 401 });
  assert.deepEqual(errors.map((e) => [e.code, e.status]), [["visitor_token", 401]]);
  // Asked again after the back-off: the dead refresh token is not presented again.
  const retry = widget.token();
  await advance(t, 1_600);
  await assert.rejects(retry, { code: "visitor_token" });
  assert.equal(errors.length, 2);
  assert.deepEqual(exFetch.calls.map((c) => new URL(c.url).pathname), ["/v1/exchange", "/v1/refresh", "/v1/exchange", "/v1/refresh"]);
});

test("signOut() forgets the refresh token; a call in flight rejects with signed_out and fires no error", async (t) => {
  fakeTime(t);
  const fetch = fakeFetch(async (url, _i, n) => {
    await new Promise((r) => setTimeout(r, 100));
    return reply(200, issued(300, { extra: { refresh_token: `r${n}` } }));
  });
  const widget = widgetAuth({ issuer: "https://auth.test", clientKey: "pk_1", visitorToken: async () => "v", fetch });
  const errors = errorsOf(widget);
  const inFlight = widget.token();
  widget.signOut();
  await advance(t, 100, 100);
  await assert.rejects(inFlight, { code: "signed_out" });
  const next = widget.token();
  await advance(t, 100, 100);
  await next;
  widget.signOut();
  const again = widget.token();
  await advance(t, 100, 100);
  await again;
  // Every call after a sign-out started a new session; no refresh token survived.
  assert.deepEqual(fetch.calls.map((c) => new URL(c.url).pathname), ["/v1/exchange", "/v1/exchange", "/v1/exchange"]);
  assert.equal(errors.length, 0);
});

test("config() asks once; a failure fires error and is retried only after the back-off", async (t) => {
  fakeTime(t);
  const fetch = fakeFetch((_u, _i, n) => (n === 1 ? reply(403, { error: "origin_not_allowed" }) : reply(200, { displayName: "Support" })));
  const widget = widgetAuth({ issuer: "https://auth.test", clientKey: "pk 1/x", fetch });
  const errors = errorsOf(widget);
  await assert.rejects(widget.config(), { code: "origin_not_allowed", status: 403 });
  const later = widget.config();
  await advance(t, 1_600);
  assert.deepEqual(await later, { displayName: "Support" });
  await Promise.all([widget.config(), widget.config()]);
  assert.equal(fetch.calls.length, 2);
  assert.equal(fetch.calls[0].url, "https://auth.test/v1/clients/pk%201%2Fx/config");
  assert.equal(errors.length, 1);
});

// DPoP: proofs on token requests, and sdk.fetch with Authorization: DPoP.
test("dpop: token requests carry a proof; fetch sends DPoP with ath and retries once with a nonce", async () => {
  const { webcrypto } = await import("node:crypto");
  const token = jwt({ exp: Math.floor(Date.now() / 1000) + 600 });
  const f = fakeFetch((url, init, n) => {
    if (url.endsWith("/v1/guest")) return reply(200, { token, token_type: "DPoP", expires_in: 600, refresh_token: "r" });
    // The resource asks for a nonce once.
    if (n == 2) return reply(401, { error: "use_dpop_nonce" }, { "dpop-nonce": "n-1" });
    return reply(200, { ok: true });
  });
  const w = widgetAuth({ issuer: "https://auth.test/", clientKey: "pk_x", dpop: true, fetch: f });
  const res = await w.fetch("https://api.test/orders?page=2", { method: "POST" });
  assert.equal(res.status, 200);
  const parts = (p) => p.split(".").slice(0, 2).map((x) => JSON.parse(Buffer.from(x, "base64url")));
  const [gh, gc] = parts(new Headers(f.calls[0].init.headers).get("dpop"));
  assert.equal(gh.typ, "dpop+jwt");
  assert.equal(gh.alg, "ES256");
  assert.deepEqual(Object.keys(gh.jwk).sort(), ["crv", "kty", "x", "y"]);
  assert.deepEqual([gc.htm, gc.htu, gc.ath], ["POST", "https://auth.test/v1/guest", undefined]);
  const ath = Buffer.from(await webcrypto.subtle.digest("SHA-256", new TextEncoder().encode(token))).toString("base64url");
  const first = new Headers(f.calls[1].init.headers);
  const retry = new Headers(f.calls[2].init.headers);
  assert.equal(first.get("authorization"), `DPoP ${token}`);
  const [rh, rc] = parts(retry.get("dpop"));
  assert.deepEqual(rh.jwk, gh.jwk, "one key for every proof");
  assert.deepEqual([rc.htm, rc.htu, rc.ath, rc.nonce], ["POST", "https://api.test/orders", ath, "n-1"]);
  assert.notEqual(parts(first.get("dpop"))[1].jti, rc.jti);
  assert.equal(f.calls.length, 3);
});
