// Types of the tokensmith browser SDK, v1 (tokensmith.js, served at
// /sdk/v1/tokensmith.js). Hand-written: keep in step with tokensmith.js.

/** A token as the SDK hands it out. */
export interface HeldToken {
  /** The token itself (a JWT, or an opaque token from a host backend). */
  readonly token: string;
  /**
   * When the SDK stops using it, in milliseconds since the epoch on this
   * device's clock (comparable with `Date.now()`). Measured from when the
   * token was asked for, so a device clock far off the server's does not
   * matter; one second before the token's real expiry.
   */
  readonly expiresAt: number;
}

/**
 * Why no token (or config) could be had. It is both the `detail` of the
 * `error` event and the rejection of the promise.
 */
export declare class TokenError extends Error {
  readonly name: "TokenError";
  /**
   * The server's `error` value (`invalid_refresh_token`, `token_replayed`,
   * `origin_not_allowed`, a host backend's own code, …), or one of:
   * - `network`: no answer (offline, unreachable, or the browser refused it: CORS);
   * - `http_error`: an error answer whose body is not JSON;
   * - `bad_response`: a 2xx answer that is not JSON or carries no `token`;
   * - `no_expiry`: neither `expires_in`, `expires_at`, a JWT `exp` nor a `ttl`;
   * - `expired`: the token had expired when it arrived;
   * - `visitor_token`: the `visitorToken` function threw or gave no token;
   * - `signed_out`: `clear()`/`signOut()` was called while it was on its way
   *   (this one fires no `error` event).
   */
  readonly code: string;
  /** The HTTP status, 0 when there was no answer. */
  readonly status: number;
  /** Seconds from a `Retry-After` header, when the answer had one. */
  readonly retryAfter?: number;
  constructor(code: string, status: number, message?: string, retryAfter?: number);
}

/** The `error` event: `detail` says why. */
export interface TokenErrorEvent extends CustomEvent<TokenError> {
  readonly type: "error";
}

interface TokenEvents extends EventTarget {
  addEventListener(type: "error", listener: (e: TokenErrorEvent) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener(type: "error", listener: (e: TokenErrorEvent) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export interface SessionTokensOptions {
  /** The host backend's auth endpoint (same origin), POSTed with the page's cookies. */
  url: string;
  /** Extra `fetch` options (headers such as a CSRF token, a body, …). */
  init?: RequestInit;
  /** Renew when this many seconds or fewer remain. Default 60. A token whose
   * whole life is shorter is used for half of it. */
  refreshAhead?: number;
  /** Lifetime in seconds of an opaque token whose answer gives no expiry. */
  ttl?: number;
  /** The `fetch` to use. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

export interface SessionTokens extends TokenEvents {
  /**
   * The held token while more than `refreshAhead` seconds remain; otherwise
   * one POST to `url`, shared by every concurrent caller. The answer is
   * `{token, expires_in}` (seconds from now), `{token, expires_at}`, or a bare
   * `{token}` whose JWT `exp` is read (against the answer's `Date` header).
   * On failure: an `error` event, and the promise rejects with the same
   * `TokenError`; the next attempt waits at least a second (doubling, with
   * jitter, up to 30 s; longer if the answer said `Retry-After`).
   */
  get(): Promise<HeldToken>;
  /** Forgets the token and the back-off (after a sign-out or a new sign-in). */
  clear(): void;
}

/** Tokens from the host page's own backend. */
export declare function sessionTokens(options: SessionTokensOptions): SessionTokens;

export interface WidgetAuthOptions {
  /** tokensmith's base URL, e.g. `https://auth.example.com`. */
  issuer: string;
  /** The client's public key (`pk_…`). */
  clientKey: string;
  /**
   * Returns a visitor token minted by the host's backend (`/v1/tokens` with
   * `"purpose": "exchange"`) for the signed-in user. Without it the widget
   * is a guest (`/v1/guest`). Called again when a new session is needed.
   */
  visitorToken?: () => Promise<string>;
  /** Refresh when this many seconds or fewer remain. Default 60. */
  refreshAhead?: number;
  /**
   * DPoP (RFC 9449): send a proof with every token request, so the tokens
   * (and the refresh family) are bound to this page's key: a non-extractable
   * ES256 key pair made with WebCrypto and kept in IndexedDB, so a reload
   * keeps the binding. `fetch()` then sends `Authorization: DPoP`. Default false.
   */
  dpop?: boolean;
  /** The `fetch` to use. Default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

export interface WidgetAuth extends TokenEvents {
  /**
   * `fetch` with the session token: `Authorization: DPoP <token>` and a
   * fresh `DPoP` proof for this method and URL (with `dpop`; sent once more
   * with the server's nonce on `use_dpop_nonce`), else `Authorization: Bearer`.
   */
  fetch(url: string, init?: RequestInit): Promise<Response>;
  /** The client's public config (`GET /v1/clients/{clientKey}/config`), asked once. */
  config(): Promise<Record<string, unknown>>;
  /**
   * The held session token while more than `refreshAhead` seconds remain;
   * else one request shared by every concurrent caller: `/v1/refresh` with
   * the refresh token held in memory, or a new session (`/v1/exchange` of a
   * fresh visitor token, or `/v1/guest`) when there is none or its family
   * is spent, expired or revoked. Failures as for `SessionTokens.get()`.
   */
  token(): Promise<HeldToken>;
  /** Forgets the session token and the refresh token. */
  signOut(): void;
}

/** A widget's own session with tokensmith. */
export declare function widgetAuth(options: WidgetAuthOptions): WidgetAuth;

/**
 * A DPoP proof (RFC 9449) by this page's key for `method` and `url` (query
 * and fragment dropped), with `ath` of `token` and `nonce` when given.
 */
export declare function dpopProof(method: string, url: string, token?: string, nonce?: string): Promise<string>;

/** The claims of a JWT, NOT verified: for display only. `{}` if unreadable. */
export declare function decodeClaims(token: string): Record<string, any>;
