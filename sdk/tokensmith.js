// tokensmith browser SDK, v1: short-lived tokens for pages and widgets.
// Served by tokensmith at /sdk/v1/tokensmith.js (types: tokensmith.d.ts).
// No dependencies, no build step. Tokens and refresh tokens are kept in
// memory only: never in localStorage, sessionStorage or cookies.

/** Why a token could not be had: `code` is tokensmith's (or the host's)
 * `error` value, or `network` (no answer: offline, or the browser refused it,
 * CORS), `http_error` (an error answer that is not JSON), `bad_response` (no
 * token in it), `no_expiry`, `expired`, `visitor_token`, `signed_out`. */
export class TokenError extends Error {
  /** @param {string} code @param {number} status @param {string} [message] @param {number} [retryAfter] */
  constructor(code, status, message, retryAfter) {
    super(message || code);
    this.name = "TokenError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

const now = () => Date.now();
const num = (v) => (typeof v == "number" && isFinite(v) ? v : undefined);

/** The claims of a JWT, unverified: for display, never for a decision.
 * @param {string} token @returns {Record<string, any>} */
export function decodeClaims(token) {
  try {
    const b = atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(b, (c) => c.charCodeAt(0)))) || {};
  } catch {
    return {};
  }
}

// One HTTP call: the JSON body of a 2xx answer, or a TokenError.
async function call(f, url, init) {
  let res, body;
  try {
    res = await f(url, init);
  } catch (e) {
    throw new TokenError("network", 0, `${url}: ${e && e.message}`);
  }
  try {
    body = await res.json();
  } catch {}
  const ok = body && typeof body == "object";
  if (!res.ok) {
    const wait = +res.headers.get("retry-after") || undefined;
    throw new TokenError((ok && body.error) || "http_error", res.status, (ok && body.error_description) || `${url}: HTTP ${res.status}`, wait);
  }
  if (!ok) throw new TokenError("bad_response", res.status, `${url}: the answer is not JSON`);
  return [body, res];
}

// A token as held: local-clock expiry, measured from when it was asked for,
// so a device clock far off the server's does not matter when the answer
// says `expires_in`. Without it: `expires_at` or the JWT `exp`, against the
// answer's `Date` header when there is one, else the device clock; then `ttl`.
function entry([body, res], sent, ttl, ahead) {
  const token = body.token;
  if (typeof token != "string" || !token) throw new TokenError("bad_response", res.status, "no token in the answer");
  let life = num(body.expires_in);
  if (life === undefined) {
    const exp = num(body.expires_at) ?? num(decodeClaims(token).exp);
    const server = Date.parse(res.headers.get("date")) / 1000 || now() / 1000;
    life = exp === undefined ? num(ttl) : exp - server;
  }
  if (life === undefined) throw new TokenError("no_expiry", res.status, "the token does not say when it expires");
  // JWT dates are whole seconds: the token may be up to 1 s older than the answer says.
  const ms = (life - 1) * 1000;
  if (!(ms > 0)) throw new TokenError("expired", res.status, "the token is expired on arrival");
  const expiresAt = sent + ms;
  // Renew `ahead` before expiry; a token shorter than that is used for half its life.
  const renewAt = ms > ahead * 1000 ? expiresAt - ahead * 1000 : sent + ms / 2;
  return { view: Object.freeze({ token, expiresAt }), renewAt, refresh: body.refresh_token };
}

// The shared machinery: the held value, one request in flight, back-off.
function source(events, fetchEntry) {
  let cur, flight, fails = 0, notBefore = 0, epoch = 0;
  const emit = (e) => events.dispatchEvent(new CustomEvent("error", { detail: e }));
  async function attempt(e) {
    const wait = notBefore - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    try {
      if (e !== epoch) throw 0;
      const next = await fetchEntry(cur);
      if (e !== epoch) throw 0;
      cur = next;
      fails = 0;
      return next.view;
    } catch (x) {
      if (e !== epoch) throw new TokenError("signed_out", 0, "signed out while a token was on its way");
      const err = x instanceof TokenError ? x : new TokenError("network", 0, String(x && x.message));
      // At most one attempt per second, doubling to 30 s, with jitter.
      const delay = Math.min(30000, 1000 * 2 ** fails++) * (1 + Math.random() / 2);
      notBefore = now() + Math.max(delay, (err.retryAfter || 0) * 1000);
      emit(err);
      throw err;
    }
  }
  return {
    get() {
      if (cur && now() < cur.renewAt) return Promise.resolve(cur.view);
      if (!flight) {
        const p = (flight = attempt(epoch).finally(() => flight === p && (flight = undefined)));
      }
      return flight;
    },
    reset() {
      cur = flight = undefined;
      fails = notBefore = 0;
      epoch++;
    },
  };
}

const defaultFetch = (...a) => globalThis.fetch(...a);

// DPoP (RFC 9449): a non-extractable ES256 key, kept in IndexedDB.
const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const te = (t) => new TextEncoder().encode(t);
const j64 = (o) => enc(te(JSON.stringify(o)));
let dk;
const idb = (op) =>
  new Promise((ok, no) => {
    const r = indexedDB.open("tokensmith-dpop");
    r.onupgradeneeded = () => r.result.createObjectStore("k");
    r.onsuccess = () => {
      const q = op(r.result.transaction("k", "readwrite").objectStore("k"));
      q.onsuccess = () => ok(q.result);
      q.onerror = no;
    };
    r.onerror = no;
  });
async function makeKey() {
  const db = globalThis.indexedDB;
  let k = db && (await idb((s) => s.get(0)).catch(() => 0));
  if (!k) {
    k = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    if (db) await idb((s) => s.put(k, 0)).catch(() => 0);
  }
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", k.publicKey);
  return [k.privateKey, { kty, crv, x, y }];
}
/** A DPoP proof by this page's key. */
export async function dpopProof(method, url, token, nonce) {
  const [k, jwk] = await (dk ||= makeKey());
  const c = { jti: enc(crypto.getRandomValues(new Uint8Array(16))), htm: method, htu: String(url).split(/[?#]/)[0], iat: Math.floor(now() / 1000), nonce };
  if (token) c.ath = enc(await crypto.subtle.digest("SHA-256", te(token)));
  const input = j64({ typ: "dpop+jwt", alg: "ES256", jwk }) + "." + j64(c);
  return input + "." + enc(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, k, te(input)));
}
// A fresh proof per request; once more with a nonce when asked.
const withDpop = (f, token, nonce) => async (url, init = {}) => {
  for (let i = 0; ; i++) {
    const h = new Headers(init.headers);
    h.set("dpop", await dpopProof((init.method || "GET").toUpperCase(), url, token, nonce));
    if (token) h.set("authorization", "DPoP " + token);
    const res = await f(url, { ...init, headers: h });
    const n = res.headers.get("dpop-nonce");
    if (i || !n || res.ok) return res;
    nonce = n;
  }
};

/** Tokens from the host page's own backend (`url`, same origin, with its
 * cookies): cached while more than `refreshAhead` seconds remain, one
 * request in flight, `error` events when none can be had. */
export function sessionTokens({ url, init = {}, refreshAhead = 60, ttl, fetch = defaultFetch } = {}) {
  const events = new EventTarget();
  const src = source(events, async () => {
    const headers = new Headers(init.headers);
    if (!headers.has("accept")) headers.set("accept", "application/json");
    const sent = now();
    return entry(await call(fetch, url, { method: "POST", credentials: "include", ...init, headers }), sent, ttl, refreshAhead);
  });
  return Object.assign(events, { get: src.get, clear: src.reset });
}

/** A widget's session with tokensmith: a guest, or the host's user through
 * a visitor token (`visitorToken`), renewed through `/v1/refresh` ahead of
 * expiry with one refresh in flight; the refresh token stays in memory. */
export function widgetAuth({ issuer, clientKey, visitorToken, refreshAhead = 60, dpop = false, fetch = defaultFetch } = {}) {
  const base = String(issuer).replace(/\/+$/, "");
  const plain = fetch;
  if (dpop) fetch = withDpop(fetch);
  const events = new EventTarget();
  const post = async (path, json) => {
    const sent = now();
    const init = { method: "POST", credentials: "omit", headers: { "content-type": "application/json" }, body: JSON.stringify(json) };
    return entry(await call(fetch, base + path, init), sent, undefined, refreshAhead);
  };
  const bootstrap = async () => {
    if (!visitorToken) return post("/v1/guest", { client_key: clientKey });
    let t;
    try {
      t = await visitorToken();
    } catch (e) {
      throw new TokenError("visitor_token", (e && e.status) || 0, `visitorToken(): ${e && e.message}`);
    }
    if (typeof t != "string" || !t.trim()) throw new TokenError("visitor_token", 0, "visitorToken() gave no token");
    return post("/v1/exchange", { token: t.trim() });
  };
  const src = source(events, async (prev) => {
    if (!prev || !prev.refresh) return bootstrap();
    try {
      return await post("/v1/refresh", { refresh_token: prev.refresh });
    } catch (e) {
      // Spent, expired or revoked family: never present it again; start anew.
      if (e.code != "invalid_refresh_token") throw e;
      prev.refresh = undefined;
      return bootstrap();
    }
  });
  const url = `${base}/v1/clients/${encodeURIComponent(clientKey)}/config`;
  const cfg = source(events, async () => ({ view: (await call(plain, url, { credentials: "omit" }))[0], renewAt: Infinity }));
  const authFetch = async (u, init = {}) => {
    const { token } = await src.get();
    if (dpop) return withDpop(plain, token)(u, init);
    const h = new Headers(init.headers);
    h.set("authorization", "Bearer " + token);
    return plain(u, { ...init, headers: h });
  };
  return Object.assign(events, { config: cfg.get, token: src.get, signOut: src.reset, fetch: authFetch });
}
