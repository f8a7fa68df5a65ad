//! Tests of `authority::flows`.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::claims::Claims;
use crate::clients::OriginPattern;
use crate::store::StoreError;

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| (*s).to_owned()).collect()
}

fn shop() -> Client {
    Client {
        allowed_origins: vec![OriginPattern::parse("https://shop.example.com").unwrap()],
        ..Client::new("shop", "chatbot")
    }
}

/// Each flow is charged to a counter of its own: no two share a name.
#[test]
fn each_flow_has_a_counter_of_its_own() {
    let flows = [Flow::Api, Flow::Guest, Flow::Session, Flow::Exchange, Flow::Refresh];
    for (i, a) in flows.iter().enumerate() {
        assert!(!a.name().is_empty(), "{a:?}");
        for b in &flows[i + 1..] {
            assert_ne!(a.name(), b.name(), "{a:?} and {b:?}");
        }
    }
}

/// A page is judged by its `Origin`; a client must be the one the
/// grant was issued to.
#[test]
fn a_grant_is_held_by_its_own_client_or_a_page_it_allows() {
    let shop = shop();
    let other = Client::new("other", "chatbot");
    let code = |r: Result<(), AuthorityError>| r.map_or_else(|e| e.code(), |()| "ok");
    assert_eq!(code(Presenter::Client(&shop).check(&shop)), "ok");
    assert_eq!(code(Presenter::Client(&other).check(&shop)), "invalid_grant");
    let page = |origin| Presenter::Page { origin }.check(&shop);
    assert_eq!(code(page(Some("https://shop.example.com"))), "ok");
    assert_eq!(code(page(Some("https://evil.example.com"))), "origin_not_allowed");
    assert_eq!(code(page(None)), "ok");
}

/// An origin is required where the flow says so; a given one must be
/// in the client's allowlist either way.
#[test]
fn an_origin_is_checked_and_required_where_the_flow_says() {
    let shop = shop();
    let code = |origin, required| match Authority::check_origin(&shop, origin, required) {
        Ok(()) => "ok",
        Err(e) => e.code(),
    };
    for required in [false, true] {
        assert_eq!(code(Some("https://shop.example.com"), required), "ok");
        assert_eq!(code(Some("https://other.example.com"), required), "origin_not_allowed");
    }
    assert_eq!(code(None, false), "ok");
    assert_eq!(code(None, true), "origin_not_allowed");
}

/// Narrowing keeps only the scopes asked for, all of which the grant
/// must have: it never widens.
#[test]
fn narrowing_keeps_the_scopes_asked_and_never_widens() {
    let id = Identity {
        sub: "alice".into(),
        scopes: scopes(&["chat", "read", "write"]),
        claims: Map::new(),
    };
    assert_eq!(narrowed(id.clone(), None).unwrap().scopes, id.scopes);
    let asked = scopes(&["write", "chat"]);
    assert_eq!(
        narrowed(id.clone(), Some(&asked)).unwrap().scopes,
        scopes(&["chat", "write"])
    );
    let wider = scopes(&["chat", "admin"]);
    let e = narrowed(id, Some(&wider)).err().unwrap();
    assert_eq!(e.code(), "scope_not_allowed");
    assert!(e.to_string().contains("admin"), "{e}");
}

/// Every refused refresh token is the same `invalid_refresh_token`; a
/// store or random failure keeps its kind.
#[test]
fn refresh_errors_become_one_refusal_or_keep_their_cause() {
    for why in [
        InvalidReason::Malformed,
        InvalidReason::Unknown,
        InvalidReason::Reused,
        InvalidReason::Revoked,
    ] {
        let e = AuthorityError::from(RefreshError::Invalid(why));
        assert!(
            matches!(e, AuthorityError::Rejected(Rejection::InvalidRefreshToken)),
            "{e:?}"
        );
    }
    let e = AuthorityError::from(RefreshError::Store(StoreError::Full { capacity: 1 }));
    assert!(
        matches!(e, AuthorityError::Store(StoreError::Full { capacity: 1 })),
        "{e:?}"
    );
    let e = AuthorityError::from(RefreshError::Random(crate::jose::JoseError::Crypto("rng")));
    assert_eq!(e.code(), "server_error");
}

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://issuer.test";
const ORIGIN: &str = "https://shop.example.com";

/// An authority on a memory store and a stopped clock, with `client`.
fn authority(dir: &std::path::Path, client: Client) -> Authority {
    crate::authority::test_authority(dir, &format!("issuer = {ISSUER:?}"), &[client], NOW)
}

fn public_shop() -> Client {
    Client {
        public_key: Some("pk_test_shop".into()),
        config: serde_json::json!({"theme": "dark"}).as_object().unwrap().clone(),
        ..shop()
    }
}

/// The guest flow's rate: an address gets a tenth of the client's
/// (20/m: 2), other addresses go on until the client's own is spent.
#[tokio::test]
async fn an_address_gets_a_tenth_of_the_clients_rate_and_the_client_its_own() {
    let t = tempfile::tempdir().unwrap();
    let limited = Client {
        rate_limit: Some(crate::units::RateLimit::parse("20/m").unwrap()),
        ..public_shop()
    };
    let a = authority(t.path(), limited);
    let guest = |ip: [u8; 4]| {
        let a = &a;
        async move {
            match a
                .guest("pk_test_shop", Some(ORIGIN), Some(IpAddr::from(ip)), None)
                .await
            {
                Ok(_) => "ok",
                Err(e) => e.code(),
            }
        }
    };
    assert_eq!(guest([192, 0, 2, 1]).await, "ok");
    assert_eq!(guest([192, 0, 2, 1]).await, "ok");
    assert_eq!(guest([192, 0, 2, 1]).await, "rate_limited");
    let mut granted = 2;
    for host in 2..=30 {
        if guest([192, 0, 2, host]).await == "ok" {
            granted += 1;
        }
    }
    assert_eq!(granted, 20);
}

/// The CORS answers and the bootstrap config: for a client's own origins only.
#[test]
fn origins_are_allowed_by_the_client_that_lists_them() {
    let t = tempfile::tempdir().unwrap();
    let a = authority(t.path(), public_shop());
    assert!(a.origin_allowed_by_any(ORIGIN));
    assert!(!a.origin_allowed_by_any("https://evil.example.com"));
    assert!(a.origin_allowed_for("pk_test_shop", ORIGIN));
    assert!(!a.origin_allowed_for("pk_test_shop", "https://evil.example.com"));
    assert!(!a.origin_allowed_for("pk_test_other", ORIGIN));
    let config = a.client_config("pk_test_shop", Some(ORIGIN)).unwrap();
    assert_eq!(config["theme"], "dark");
    let code = |pk, origin| a.client_config(pk, origin).err().map(|e| e.code());
    assert_eq!(code("pk_test_shop", None), Some("origin_not_allowed"));
    assert_eq!(code("pk_test_other", Some(ORIGIN)), Some("unknown_client"));
}

/// A visitor token lives at most `EXCHANGE_TTL_MAX`: one of exactly
/// that is exchanged, one a second longer is refused, whoever made it.
#[tokio::test]
async fn a_visitor_token_of_exactly_the_maximum_lifetime_is_exchanged() {
    let t = tempfile::tempdir().unwrap();
    let a = authority(t.path(), public_shop());
    let visitor = |ttl| {
        let spec = crate::issuer::TokenSpec {
            sub: "alice".into(),
            aud: vec![super::super::exchange_audience(ISSUER)],
            ttl,
            ..Default::default()
        };
        a.sign(Some("shop"), spec).unwrap().token
    };
    let (at_max, over) = (
        visitor(super::super::EXCHANGE_TTL_MAX),
        visitor(super::super::EXCHANGE_TTL_MAX + 1),
    );
    let granted = a.exchange(&at_max, Some(ORIGIN), None, None).await.unwrap();
    assert_eq!(granted.token.claims.sub, "alice");
    let refused = a.exchange(&over, Some(ORIGIN), None, None).await.unwrap_err();
    assert_eq!(refused.code(), "ttl_too_long");
}

/// What converting `e` logs at WARN or above, on this thread.
fn warned(e: RefreshError) -> String {
    crate::testlog::warnings(|| drop(AuthorityError::from(e)))
}

/// A spent refresh token presented again (two holders: a theft, or a
/// client that refreshes twice) is the one refusal logged as a warning.
#[test]
fn only_a_reused_refresh_token_is_a_warning() {
    let reused = warned(RefreshError::Invalid(InvalidReason::Reused));
    assert!(
        reused.contains("WARN") && reused.contains("family is revoked"),
        "{reused:?}"
    );
    for why in [InvalidReason::Malformed, InvalidReason::Unknown, InvalidReason::Revoked] {
        assert_eq!(warned(RefreshError::Invalid(why)), "", "{why:?}");
    }
}

/// A grant's debug form names its token by `jti` and hides the refresh token.
#[test]
fn a_grants_debug_form_hides_the_refresh_token() {
    let claims = Claims {
        iss: "https://issuer.test".into(),
        sub: "alice".into(),
        aud: vec![],
        iat: 0,
        exp: 60,
        nbf: None,
        jti: "jti-1".into(),
        scopes: vec![],
        extra: Map::new(),
    };
    let grant = Grant {
        token: IssuedToken {
            token: "the.access.token".into(),
            claims,
        },
        refresh_token: Some("refresh-secret".into()),
    };
    let dbg = format!("{grant:?}");
    assert!(dbg.contains("jti-1") && dbg.contains("<redacted>"), "{dbg}");
    assert!(
        !dbg.contains("refresh-secret") && !dbg.contains("the.access.token"),
        "{dbg}"
    );
}

#[test]
fn ipv6_is_limited_by_its_slash_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(ip_key(a), ip_key(b));
    assert_ne!(ip_key(a), ip_key(c));
    assert_eq!(ip_key("192.0.2.7".parse().unwrap()), "192.0.2.7");
    assert_eq!(ip_key("::ffff:192.0.2.7".parse().unwrap()), "192.0.2.7");
}
