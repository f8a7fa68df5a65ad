// The SDK in a real browser (Debian's Chromium, driven by playwright-core)
// against a real tokensmith (`serve --dev`, 8 s tokens) and the demo backend
// (the identity_backend example), and the demo plugin backend (the
// plugin_backend example, for DPoP). Started by scripts/browser-test, which
// passes their addresses and the dev client's keys in the environment.
//
// Pages: a blank page of this runner's on 127.0.0.1 (an origin the dev
// client allows) and on 127.0.0.2 (one it does not), and pages on the demo
// backend's origin (allowed too; its cookies make the host's user).
// Requests are counted twice: as the browser sent them (Playwright's request
// events) and as tokensmith saw them (its /metrics), and printed per test.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { chromium } from "playwright-core";
import { generateKeyPair, generateProof } from "dpop";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the browser tests through scripts/browser-test`);
  return v;
};
const ISSUER = env("TS_ISSUER");
const API_KEY = env("TS_API_KEY");
const CLIENT_KEY = env("TS_PUBLIC_KEY");
const DEMO = env("DEMO_URL");
const PLUGIN = env("PLUGIN_URL");
const TTL = Number(env("TS_TTL"));
const SCREENSHOT = env("SCREENSHOT");

const LAUNCH = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Playwright gives every launch a fresh, empty --user-data-dir of its own.
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"],
};

const JWT = /eyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]+/;
const BLANK = "<!doctype html><html><head><meta charset=utf-8><title>blank</title></head><body></body></html>";

let browser;
let allowed; // http://127.0.0.1:PORT, allowed by the dev client
let foreign; // http://127.0.0.2:PORT (or [::1]), allowed by no client
const servers = [];

/** A blank page on `host`; its origin. */
async function blankServer(host) {
  const server = http.createServer((_req, res) => res.writeHead(200, { "content-type": "text/html" }).end(BLANK));
  await new Promise((ok, err) => server.once("error", err).listen(0, host, ok));
  servers.push(server);
  const { port } = server.address();
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

before(async () => {
  allowed = await blankServer("127.0.0.1");
  foreign = await blankServer("127.0.0.2").catch(() => blankServer("::1"));
  browser = await chromium.launch(LAUNCH);
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
});

// ---------------------------------------------------------------------------
// Helpers

/** tokensmith's own counts: tokens issued to `dev`, and requests by route
 * (preflights included: they share the route). */
async function serverCounts() {
  const text = await (await fetch(`${ISSUER}/metrics`)).text();
  const counts = { issued: 0 };
  for (const line of text.split("\n")) {
    let m = line.match(/^tokensmith_tokens_issued_total\{client="dev"\} (\d+)/);
    if (m) counts.issued = +m[1];
    m = line.match(/^tokensmith_request_duration_seconds_count\{route="([^"]+)"\} (\d+)/);
    if (m) counts[m[1]] = +m[2];
  }
  return counts;
}

function delta(before, after) {
  const out = {};
  for (const k of Object.keys(after)) if ((after[k] || 0) !== (before[k] || 0)) out[k] = after[k] - (before[k] || 0);
  return out;
}

/** A fresh context and page, with every request it sends recorded, and the
 * JSON bodies of token answers (to find refresh tokens). */
async function openPage(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const sent = [];
  const answers = [];
  const console = [];
  page.on("request", (r) => sent.push({ method: r.method(), url: new URL(r.url()) }));
  page.on("console", (m) => console.push(m.text()));
  page.on("response", async (r) => {
    const u = new URL(r.url());
    if (r.request().method() === "POST" && /^\/(v1|api)\//.test(u.pathname)) {
      answers.push({ path: u.pathname, status: r.status(), text: await r.text().catch(() => "") });
    }
  });
  await page.goto(url);
  const count = (method, path) => sent.filter((r) => r.method === method && r.url.pathname === path).length;
  /** The first recorded answer of `path` (bodies are read asynchronously). */
  const answer = async (path) => {
    for (let i = 0; i < 100; i++, await sleep(20)) {
      const a = answers.find((x) => x.path === path);
      if (a) return a;
    }
    throw new Error(`no answer from ${path} recorded`);
  };
  return { context, page, sent, answers, console, count, answer };
}

/** The demo's host page, signed in there as `user` (through its backend's
 * `/login`, so the session cookie is the browser's). The page's own first
 * request (401: nobody signed in yet) is not counted. */
async function demoPage(user) {
  const p = await openPage(`${DEMO}/`);
  await p.page.locator("#signin").waitFor({ state: "visible" });
  const status = await p.page.evaluate(async (user) => {
    const r = await fetch("/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
    return r.status;
  }, user);
  assert.equal(status, 200);
  p.sent.length = 0;
  p.answers.length = 0;
  return p;
}

/** Loads the SDK into the page from tokensmith, as `window.ts`, and an
 * `errors` list that records every `error` event of what `track()` is given. */
async function loadSdk(page) {
  await page.evaluate(async (issuer) => {
    window.ts = await import(`${issuer}/sdk/v1/tokensmith.js`);
    window.errors = [];
    window.track = (target) => {
      target.addEventListener("error", (e) => window.errors.push({ code: e.detail.code, status: e.detail.status, message: e.detail.message }));
      return target;
    };
  }, ISSUER);
}

/** Asks tokensmith to verify `token` as the dev client's backend would. */
async function verify(token) {
  const r = await fetch(`${ISSUER}/v1/verify`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ token }),
  });
  return { status: r.status, body: await r.json() };
}

function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------

test("guest bootstrap works from an allowed Origin; from another the browser blocks it (CORS) and error fires", { timeout: 60_000 }, async (t) => {
  const ok = await openPage(`${allowed}/`);
  await loadSdk(ok.page);
  let before = await serverCounts();
  const got = await ok.page.evaluate(async ([issuer, clientKey]) => {
    const w = track(ts.widgetAuth({ issuer, clientKey }));
    return { ...(await w.token()), errors };
  }, [ISSUER, CLIENT_KEY]);
  const okServer = delta(before, await serverCounts());
  assert.deepEqual(got.errors, []);
  const v = await verify(got.token);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.match(v.body.claims.sub, /^guest:/);
  assert.deepEqual(v.body.claims.scopes, ["dev"]);
  assert.equal(v.body.claims.client_id, "dev");
  assert.ok(got.expiresAt > Date.now() && got.expiresAt <= Date.now() + TTL * 1000);
  assert.equal(ok.count("POST", "/v1/guest"), 1);
  assert.equal(okServer.issued, 1);

  const bad = await openPage(`${foreign}/`);
  await loadSdk(bad.page); // the SDK itself is public: any origin may import it
  before = await serverCounts();
  const refused = await bad.page.evaluate(async ([issuer, clientKey]) => {
    const w = track(ts.widgetAuth({ issuer, clientKey }));
    try {
      await w.token();
      return { resolved: true };
    } catch (e) {
      return { name: e.name, code: e.code, status: e.status, errors };
    }
  }, [ISSUER, CLIENT_KEY]);
  const badServer = delta(before, await serverCounts());
  assert.equal(refused.name, "TokenError");
  // No answer the page may read: the browser refused it, not tokensmith's JSON.
  assert.deepEqual([refused.code, refused.status], ["network", 0]);
  assert.deepEqual(refused.errors.map((e) => [e.code, e.status]), [["network", 0]]);
  assert.ok(bad.console.some((m) => /CORS policy/.test(m)), `console: ${bad.console.join(" | ")}`);
  // tokensmith saw only the preflight (403), never the POST: nothing issued.
  assert.equal(badServer.issued ?? 0, 0);
  assert.equal(badServer["/v1/guest"], 1, JSON.stringify(badServer));
  t.diagnostic(`requests, allowed origin: browser POST /v1/guest ${ok.count("POST", "/v1/guest")}; tokensmith /v1/guest ${okServer["/v1/guest"]} (preflight + POST), tokens issued ${okServer.issued}`);
  t.diagnostic(`requests, foreign origin: browser POST /v1/guest attempts ${bad.count("POST", "/v1/guest")}; tokensmith /v1/guest ${badServer["/v1/guest"]} (the preflight, 403), tokens issued 0`);
  await ok.context.close();
  await bad.context.close();
});

test("ten concurrent get() and token() calls make one network request each", { timeout: 60_000 }, async (t) => {
  const p = await demoPage("carol");
  await loadSdk(p.page);
  const before = await serverCounts();
  const got = await p.page.evaluate(async ([issuer, clientKey]) => {
    const session = track(ts.sessionTokens({ url: "/api/widget-auth" }));
    const widget = track(ts.widgetAuth({ issuer, clientKey }));
    const [s, w] = await Promise.all([
      Promise.all(Array.from({ length: 10 }, () => session.get())),
      Promise.all(Array.from({ length: 10 }, () => widget.token())),
    ]);
    return { s: s.map((x) => x.token), w: w.map((x) => x.token), errors };
  }, [ISSUER, CLIENT_KEY]);
  const server = delta(before, await serverCounts());
  assert.deepEqual(got.errors, []);
  assert.equal(new Set(got.s).size, 1);
  assert.equal(new Set(got.w).size, 1);
  assert.equal(claimsOf(got.s[0]).sub, "carol");
  assert.equal(p.count("POST", "/api/widget-auth"), 1);
  assert.equal(p.count("POST", "/v1/guest"), 1);
  // One token for carol (the backend's /v1/tokens) and one guest token.
  assert.equal(server.issued, 2);
  assert.equal(server["/v1/tokens"], 1);
  t.diagnostic(`requests: 10 × get() → browser POST /api/widget-auth ${p.count("POST", "/api/widget-auth")}, tokensmith /v1/tokens ${server["/v1/tokens"]}`);
  t.diagnostic(`requests: 10 × token() → browser POST /v1/guest ${p.count("POST", "/v1/guest")}, tokensmith /v1/guest ${server["/v1/guest"]} (preflight + POST); tokens issued ${server.issued}`);
  await p.context.close();
});

test(`${TTL}-second tokens, refreshAhead 3: refreshed before expiry, never an expired token handed out`, { timeout: 60_000 }, async (t) => {
  const p = await demoPage("dave");
  await loadSdk(p.page);
  const before = await serverCounts();
  const runFor = (TTL + 2) * 1000;
  const got = await p.page.evaluate(async ([issuer, clientKey, runFor]) => {
    const session = track(ts.sessionTokens({ url: "/api/widget-auth", refreshAhead: 3 }));
    const widget = track(ts.widgetAuth({ issuer, clientKey, refreshAhead: 3 }));
    const seen = { session: [], widget: [] };
    const end = Date.now() + runFor;
    while (Date.now() < end) {
      const [s, w] = await Promise.all([session.get(), widget.token()]);
      const at = Date.now();
      seen.session.push({ ...s, at });
      seen.widget.push({ ...w, at });
      await new Promise((r) => setTimeout(r, 200));
    }
    return { seen, errors };
  }, [ISSUER, CLIENT_KEY, runFor]);
  const server = delta(before, await serverCounts());
  assert.deepEqual(got.errors, []);
  for (const [name, list] of Object.entries(got.seen)) {
    assert.ok(list.length > 20, `${name}: ${list.length} calls`);
    for (const { token, expiresAt, at } of list) {
      const { exp } = claimsOf(token);
      assert.ok(exp * 1000 > at, `${name}: handed out a token past its exp`);
      assert.ok(expiresAt <= exp * 1000 + 1000 && expiresAt - at >= 1000, `${name}: expiresAt ${expiresAt - at} ms ahead`);
    }
    const distinct = [...new Set(list.map((x) => x.token))];
    // 8 s tokens renewed 3 s (plus a second of rounding) ahead: one every 4 s.
    assert.ok(distinct.length >= 3 && distinct.length <= 4, `${name}: ${distinct.length} tokens`);
    // Each renewal came while the previous token was still valid.
    for (let i = 1; i < distinct.length; i++) {
      const firstSeen = list.find((x) => x.token === distinct[i]).at;
      assert.ok(firstSeen < claimsOf(distinct[i - 1]).exp * 1000, `${name}: renewal ${i} came after expiry`);
    }
  }
  const tokens = new Set(got.seen.widget.map((x) => x.token)).size;
  assert.equal(p.count("POST", "/v1/guest"), 1);
  assert.equal(p.count("POST", "/v1/refresh"), tokens - 1);
  assert.equal(p.count("POST", "/api/widget-auth"), new Set(got.seen.session.map((x) => x.token)).size);
  const last = got.seen.widget.at(-1).token;
  assert.equal((await verify(last)).status, 200);
  t.diagnostic(`requests over ${runFor / 1000} s, ${got.seen.widget.length} calls each: browser POST /api/widget-auth ${p.count("POST", "/api/widget-auth")}, POST /v1/guest ${p.count("POST", "/v1/guest")}, POST /v1/refresh ${p.count("POST", "/v1/refresh")}; tokensmith /v1/tokens ${server["/v1/tokens"]}, /v1/refresh ${server["/v1/refresh"] ?? 0} (with preflights), tokens issued ${server.issued}`);
  await p.context.close();
});

test("a visitor token is exchanged once; a second exchange of it fails with token_replayed", { timeout: 60_000 }, async (t) => {
  const p = await demoPage("erin");
  await loadSdk(p.page);
  const got = await p.page.evaluate(async ([issuer, clientKey]) => {
    const r = await fetch("/api/visitor-token", { method: "POST" });
    const visitor = await r.text();
    const first = track(ts.widgetAuth({ issuer, clientKey, visitorToken: async () => visitor }));
    const again = track(ts.widgetAuth({ issuer, clientKey, visitorToken: async () => visitor }));
    const one = await first.token();
    const two = await again.token().then(
      () => ({ resolved: true }),
      (e) => ({ code: e.code, status: e.status }),
    );
    return { status: r.status, visitor, one, two, errors };
  }, [ISSUER, CLIENT_KEY]);
  assert.equal(got.status, 200);
  assert.equal(claimsOf(got.visitor).aud, `${ISSUER}/v1/exchange`);
  const v = await verify(got.one.token);
  assert.equal(v.status, 200, JSON.stringify(v.body));
  assert.equal(v.body.claims.sub, "erin");
  assert.deepEqual(got.two, { code: "token_replayed", status: 401 });
  assert.deepEqual(got.errors.map((e) => [e.code, e.status]), [["token_replayed", 401]]);
  assert.equal(p.count("POST", "/api/visitor-token"), 1);
  assert.equal(p.count("POST", "/v1/exchange"), 2);
  t.diagnostic(`requests: browser POST /api/visitor-token ${p.count("POST", "/api/visitor-token")}, POST /v1/exchange ${p.count("POST", "/v1/exchange")} (200, then 401 token_replayed)`);
  await p.context.close();
});

test("a revoked family: token() bootstraps again as a guest; with an exchange it fires error once the host says no", { timeout: 60_000 }, async (t) => {
  // Both widgets refresh at half their life (refreshAhead longer than it).
  const p = await demoPage("frank");
  await loadSdk(p.page);
  const first = await p.page.evaluate(async ([issuer, clientKey]) => {
    window.guest = track(ts.widgetAuth({ issuer, clientKey, refreshAhead: 60 }));
    window.user = track(ts.widgetAuth({
      issuer,
      clientKey,
      refreshAhead: 60,
      visitorToken: async () => {
        const r = await fetch("/api/visitor-token", { method: "POST" });
        if (!r.ok) throw Object.assign(new Error(`HTTP ${r.status}`), { status: r.status });
        return r.text();
      },
    }));
    return { guest: (await guest.token()).token, user: (await user.token()).token };
  }, [ISSUER, CLIENT_KEY]);
  // Someone else spends both refresh tokens (as a thief would): the SDK's
  // next refresh presents a spent token, and tokensmith revokes the family.
  const stolen = {};
  for (const [name, path] of [["guest", "/v1/guest"], ["user", "/v1/exchange"]]) {
    const { refresh_token } = JSON.parse((await p.answer(path)).text);
    const r = await fetch(`${ISSUER}/v1/refresh`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token }) });
    assert.equal(r.status, 200, name);
    stolen[name] = (await r.json()).refresh_token;
  }
  // The user has signed out of the shop meanwhile.
  assert.equal(await p.page.evaluate(async () => (await fetch("/logout", { method: "POST" })).status), 204);
  await sleep((TTL / 2) * 1000);
  const before = await serverCounts();
  const after = await p.page.evaluate(async () => {
    const g = await guest.token();
    const u = await user.token().then(() => ({ resolved: true }), (e) => ({ code: e.code, status: e.status }));
    return { guest: g.token, user: u, errors };
  });
  const server = delta(before, await serverCounts());
  // The guest is a new guest; the signed-in widget could not start again.
  assert.notEqual(claimsOf(after.guest).sub, claimsOf(first.guest).sub);
  assert.equal((await verify(after.guest)).status, 200);
  assert.deepEqual(after.user, { code: "visitor_token", status: 401 });
  assert.deepEqual(after.errors.map((e) => [e.code, e.status]), [["visitor_token", 401]]);
  assert.equal(p.count("POST", "/v1/refresh"), 2);
  assert.equal(p.count("POST", "/v1/guest"), 2);
  assert.equal(p.count("POST", "/v1/exchange"), 1);
  assert.equal(p.count("POST", "/api/visitor-token"), 2);
  await p.answer("/v1/refresh");
  assert.ok(p.answers.filter((a) => a.path === "/v1/refresh").every((a) => a.status === 401 && /invalid_refresh_token/.test(a.text)));
  // The whole family is dead, the thief's successor included.
  for (const name of ["guest", "user"]) {
    const r = await fetch(`${ISSUER}/v1/refresh`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ refresh_token: stolen[name] }) });
    assert.equal(r.status, 401, name);
    assert.equal((await r.json()).error, "invalid_refresh_token");
  }
  t.diagnostic(`requests after the revocation: browser POST /v1/refresh ${p.count("POST", "/v1/refresh")} (both 401), POST /v1/guest ${p.count("POST", "/v1/guest")} (1 new), POST /api/visitor-token ${p.count("POST", "/api/visitor-token")} (1 new, 401), POST /v1/exchange ${p.count("POST", "/v1/exchange")} (none new); tokensmith tokens issued ${server.issued}`);
  await p.context.close();
});

test("the network going away: error fires, the promise rejects, and retries wait a second", { timeout: 60_000 }, async (t) => {
  const p = await openPage(`${allowed}/`);
  await loadSdk(p.page);
  await p.page.evaluate(async ([issuer, clientKey]) => {
    window.w = track(ts.widgetAuth({ issuer, clientKey }));
  }, [ISSUER, CLIENT_KEY]);
  await p.context.setOffline(true);
  const got = await p.page.evaluate(async () => {
    const outcomes = [];
    const end = Date.now() + 2500;
    // A caller that retries in a tight loop.
    while (Date.now() < end) outcomes.push(await w.token().then(() => "ok", (e) => e.code));
    return { outcomes, errors };
  });
  await p.context.setOffline(false);
  assert.ok(got.outcomes.every((o) => o === "network"), got.outcomes.join());
  // 1 s then 2 s (+ up to 50 % jitter) apart: 2 or 3 attempts in 2.5 s.
  assert.ok(got.outcomes.length >= 2 && got.outcomes.length <= 3, `${got.outcomes.length} attempts`);
  assert.equal(got.errors.length, got.outcomes.length);
  const attempts = p.count("POST", "/v1/guest");
  assert.ok(attempts <= got.outcomes.length, `${attempts} requests`);
  t.diagnostic(`requests while offline for 2.5 s of back-to-back calls: ${attempts} attempted, ${got.outcomes.length} error events`);
  await p.context.close();
});

/** Signs in on the demo's host page through its form; waits for the widget. */
async function signInOnDemo(user) {
  const p = await openPage(`${DEMO}/`);
  await p.page.setViewportSize({ width: 1000, height: 420 });
  await p.page.locator("#login input[name=user]").fill(user);
  await p.page.locator("#login button").click();
  await p.page.locator("#account").waitFor({ state: "visible" });
  const widget = p.page.frameLocator("#widget");
  await widget.locator("#who", { hasText: `Signed in as ${user}` }).waitFor({ timeout: 15_000 });
  return { ...p, widget };
}

test("the demo: sign in on the host page, and the widget shows who it is signed in as (screenshot)", { timeout: 60_000 }, async (t) => {
  const p = await signInOnDemo("alice");
  assert.equal(await p.page.locator("#user").textContent(), "alice");
  assert.equal(await p.widget.locator("#sub").textContent(), "alice");
  assert.equal(await p.widget.locator("#client").textContent(), "dev");
  await mkdir(dirname(SCREENSHOT), { recursive: true });
  await p.page.screenshot({ path: SCREENSHOT });
  // Signing out of the shop: the page says so at once; the widget's session
  // lives until it next needs the host (a fresh visitor token).
  await p.page.locator("#logout").click();
  await p.page.locator("#signin").waitFor({ state: "visible" });
  t.diagnostic(`screenshot: ${SCREENSHOT}`);
  t.diagnostic(`requests: browser POST /api/widget-auth ${p.count("POST", "/api/widget-auth")}, POST /api/visitor-token ${p.count("POST", "/api/visitor-token")}, POST /v1/exchange ${p.count("POST", "/v1/exchange")}, GET config ${p.sent.filter((r) => r.url.pathname.endsWith("/config")).length}`);
  await p.context.close();
});

test("nothing token-shaped is left in localStorage, sessionStorage or document.cookie", { timeout: 60_000 }, async (t) => {
  const p = await signInOnDemo("grace");
  // A guest widget too, and a renewal in each, before looking.
  const guest = await p.context.newPage();
  guest.on("request", (r) => p.sent.push({ method: r.method(), url: new URL(r.url()) }));
  await guest.goto(`${DEMO}/widget?guest`);
  await guest.locator("#who", { hasText: "Chatting as a guest" }).waitFor();
  await sleep((TTL / 2) * 1000);
  await p.widget.locator("#use").click();
  await guest.locator("#use").click();
  await sleep(500);
  const tokens = p.answers.map((a) => a.text).join(" ").match(new RegExp(JWT.source, "g")) || [];
  const refreshTokens = p.answers.flatMap((a) => (a.text.match(/"refresh_token":"([\w-]+)"/) || []).slice(1));
  assert.ok(tokens.length >= 3 && refreshTokens.length >= 1, `${tokens.length} tokens seen on the wire`);
  const frames = [...p.page.frames(), ...guest.frames()];
  const stores = [];
  for (const frame of frames) {
    stores.push(await frame.evaluate(() => ({
      url: location.href,
      local: Object.entries(localStorage),
      session: Object.entries(sessionStorage),
      cookie: document.cookie,
    })));
  }
  const cookies = await p.context.cookies();
  for (const s of stores) {
    assert.deepEqual(s.local, [], `${s.url}: localStorage`);
    assert.deepEqual(s.session, [], `${s.url}: sessionStorage`);
    assert.equal(s.cookie, "", `${s.url}: document.cookie`);
  }
  // The browser's cookie jar holds the shop's own HttpOnly session id, nothing else.
  assert.deepEqual(cookies.map((c) => [c.name, c.httpOnly]), [["sid", true]]);
  const everything = JSON.stringify({ stores, cookies });
  assert.doesNotMatch(everything, JWT);
  for (const secret of [...tokens, ...refreshTokens]) assert.ok(!everything.includes(secret));
  t.diagnostic(`checked ${frames.length} frames and ${cookies.length} cookie(s) against ${tokens.length} tokens and ${refreshTokens.length} refresh tokens seen on the wire`);
  t.diagnostic(`requests: browser POST /v1/exchange ${p.count("POST", "/v1/exchange")}, POST /v1/guest ${p.count("POST", "/v1/guest")}, POST /v1/refresh ${p.count("POST", "/v1/refresh")}, POST /api/widget-auth ${p.count("POST", "/api/widget-auth")}`);
  await p.context.close();
});

test("DPoP: a bound token from the page works with the page's key only; taken out and replayed with another key, without a proof or as Bearer, the demo plugin refuses it", { timeout: 60_000 }, async (t) => {
  // A visitor token with the plugin's read scope, as a host's backend mints it.
  const minted = await fetch(`${ISSUER}/v1/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ sub: "dora", scopes: ["read:orders"], purpose: "exchange" }),
  });
  assert.equal(minted.status, 200);
  const visitor = (await minted.json()).token;
  // The page is on the plugin's origin (one the dev client allows), so
  // widget.fetch is same-origin: the plugin serves no page, so the page is
  // its 401 answer to a request without a token.
  const context = await browser.newContext();
  const page = await context.newPage();
  const sent = [];
  page.on("request", (r) => sent.push(r));
  assert.equal((await page.goto(`${PLUGIN}/orders`)).status(), 401);
  await loadSdk(page);
  const orders = `${PLUGIN}/orders`;
  const use = () => page.evaluate(async (url) => {
    const r = await window.widget.fetch(url);
    return { status: r.status, body: await r.json() };
  }, orders);
  const token = await page.evaluate(async ({ issuer, clientKey, visitor }) => {
    window.widget = track(ts.widgetAuth({ issuer, clientKey, visitorToken: async () => visitor, dpop: true }));
    return (await window.widget.token()).token;
  }, { issuer: ISSUER, clientKey: CLIENT_KEY, visitor });
  const claims = claimsOf(token);
  assert.match(claims.cnf?.jkt ?? "", /^[\w-]{43}$/, "the token is bound to the page's key");
  assert.deepEqual(claims.scopes, ["read:orders"]);
  // The page's own request: Authorization: DPoP and a proof by its key.
  const own = await use();
  assert.equal(own.status, 200, JSON.stringify(own.body));
  assert.equal(own.body.sub, "dora");
  const call = await sent.findLast((r) => r.url() === orders && r.method() === "GET").allHeaders();
  assert.equal(call.authorization, `DPoP ${token}`);
  assert.match(call.dpop, /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/);

  // The token taken out of the page: the page's key is not extractable, so
  // a thief can only sign with a key of their own (a correct proof for
  // this request and this token, by the dpop npm package), or send none.
  const thief = await generateKeyPair("ES256");
  const replays = [
    ["another key's proof", { authorization: `DPoP ${token}`, dpop: await generateProof(thief, orders, "GET", undefined, token) }],
    ["no proof", { authorization: `DPoP ${token}` }],
    ["the Bearer scheme", { authorization: `Bearer ${token}` }],
  ];
  for (const [what, headers] of replays) {
    const r = await fetch(orders, { headers });
    const body = await r.json();
    assert.equal(r.status, 401, `${what}: ${JSON.stringify(body)}`);
    assert.equal(body.error, "invalid_dpop_proof", what);
    // RFC 9449 §7.1: the DPoP scheme, its error code and the algorithms.
    assert.match(r.headers.get("www-authenticate") ?? "", /^DPoP error="invalid_dpop_proof", algs="[A-Z0-9 a-z]+"$/, what);
    t.diagnostic(`${what}: 401 ${body.error} (${body.error_description})`);
  }
  // The refusals spent nothing: the page still gets its orders.
  assert.equal((await use()).status, 200);
  assert.deepEqual(await page.evaluate(() => window.errors), []);
  await context.close();
});
