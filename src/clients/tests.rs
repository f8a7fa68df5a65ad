//! Tests of the client registry, API keys and Origin matching.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::*;

fn registry() -> (ClientRegistry, String) {
    let key = new_api_key().unwrap();
    let shop = Client {
        api_keys: vec![api_key_hash(&key.key)],
        public_key: Some("pk_live_shop".into()),
        allowed_origins: ["https://shop.example.com", "http://localhost:*"]
            .into_iter()
            .map(|o| OriginPattern::parse(o).unwrap())
            .collect(),
        ..Client::new("shop", "chatbot")
    };
    let other = Client {
        audiences: vec!["reports".into()],
        ..Client::new("other", "other")
    };
    (ClientRegistry::from_clients(&[shop, other]).unwrap(), key.key)
}

fn is_base64url(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[test]
fn new_api_keys_have_the_documented_format() {
    let k = new_api_key().unwrap();
    let body = k.key.strip_prefix("sk_live_").unwrap();
    assert_eq!(body.len(), 43, "32 bytes in unpadded base64url");
    assert!(is_base64url(body));
    assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);

    let hex = k.hash_line.strip_prefix("sha256:").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(k.hash_line, hash_line(&api_key_hash(&k.key)));
    assert_eq!(parse_hash_line(&k.hash_line).unwrap(), api_key_hash(&k.key));

    assert_ne!(new_api_key().unwrap().key, k.key);
    let dbg = format!("{k:?}");
    assert!(!dbg.contains(body), "{dbg}");
    assert!(dbg.contains(&k.hash_line), "{dbg}");
}

#[test]
fn hash_lines_are_sha256_hex() {
    // sha256("sk_live_example"), as `sha256sum` prints it.
    let line = "sha256:edc0244907453860f53b31a05089a2a9f0fdb349e3610b2ab88a36fd9719d7fa";
    assert_eq!(hash_line(&api_key_hash("sk_live_example")), line);
    assert_eq!(
        parse_hash_line(&line.to_ascii_uppercase().replacen("SHA256", "sha256", 1)),
        parse_hash_line(line)
    );
    for bad in [
        "",
        "sha256:",
        "sha256:zz",
        "SHA256:00",
        "md5:00",
        &line[..70],
        &format!("{line}0"),
    ] {
        assert!(parse_hash_line(bad).is_err(), "{bad:?}");
    }
    let secret = "sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert!(!parse_hash_line(secret).unwrap_err().contains(secret));
}

#[test]
fn new_public_keys_have_the_documented_format() {
    let pk = new_public_key().unwrap();
    let body = pk.strip_prefix("pk_live_").unwrap();
    assert_eq!(body.len(), 22, "16 bytes in unpadded base64url");
    assert!(is_base64url(body));
    assert!(check_public_key(&pk).is_ok());
    assert_ne!(new_public_key().unwrap(), pk);
}

#[test]
fn lookup_by_api_key() {
    let (reg, key) = registry();
    assert_eq!(reg.len(), 2);
    assert!(!reg.is_empty());
    assert_eq!(reg.by_api_key(&key).unwrap().id, "shop");
    // Wrong, truncated, extended, differently cased, and empty keys.
    let mut wrong = key.clone();
    wrong.pop();
    assert!(reg.by_api_key(&wrong).is_none());
    assert!(reg.by_api_key(&format!("{key}x")).is_none());
    assert!(reg.by_api_key(&key.to_ascii_uppercase()).is_none());
    assert!(reg.by_api_key(&new_api_key().unwrap().key).is_none());
    assert!(reg.by_api_key("").is_none());
    assert!(reg.by_api_key("sk_").is_none());
}

#[test]
fn keys_without_the_prefix_or_too_long_are_refused_before_lookup() {
    // Their hashes are registered, so only the early refusal stops them.
    let client = Client::new("c", "c");
    let long = format!("sk_{}", "a".repeat(254));
    let reg = ClientRegistry::default()
        .with_client(client.clone(), api_key_hash("pk_live_notakey"))
        .with_client(
            Client {
                id: "d".into(),
                ..client.clone()
            },
            api_key_hash(&long),
        );
    assert_eq!(long.len(), 257);
    assert!(reg.by_api_key("pk_live_notakey").is_none());
    assert!(reg.by_api_key(&long).is_none());
    let just_fits = format!("sk_{}", "a".repeat(253));
    let reg = reg.with_client(
        Client {
            id: "e".into(),
            ..client
        },
        api_key_hash(&just_fits),
    );
    assert_eq!(reg.by_api_key(&just_fits).unwrap().id, "e");
}

#[test]
fn the_full_hash_is_compared_not_just_the_bucket() {
    // A stored hash that shares the 8-byte bucket prefix with the
    // presented key's hash but differs in its last byte must not match:
    // the map lookup only finds the bucket; the constant-time comparison
    // of all 32 bytes decides.
    let (reg, key) = registry();
    let shop = reg.by_id("shop").unwrap();
    let mut near = api_key_hash(&key);
    near[31] ^= 1;
    let reg = ClientRegistry::default().with_client((*shop).clone(), near);
    assert_eq!(
        reg.by_key_prefix.get(&key_prefix(&api_key_hash(&key))).map(Vec::len),
        Some(1)
    );
    assert!(reg.by_api_key(&key).is_none());
    // And the same bucket holding both finds the right one.
    let other = Client {
        id: "twin".into(),
        public_key: None,
        ..(*shop).clone()
    };
    let reg = reg.with_client(other, api_key_hash(&key));
    assert_eq!(reg.by_key_prefix.get(&key_prefix(&near)).map(Vec::len), Some(2));
    assert_eq!(reg.by_api_key(&key).unwrap().id, "twin");
}

#[test]
fn lookup_by_public_key_and_id() {
    let (reg, _) = registry();
    assert_eq!(reg.by_public_key("pk_live_shop").unwrap().id, "shop");
    assert!(reg.by_public_key("pk_live_nope").is_none());
    assert_eq!(reg.by_id("other").unwrap().audience, "other");
    assert!(reg.by_id("nope").is_none());
    let other = reg.by_id("other").unwrap();
    assert!(other.audience_allowed("other") && other.audience_allowed("reports"));
    assert!(!other.audience_allowed("chatbot") && !other.audience_allowed(""));
}

#[test]
fn with_client_adds_and_replaces() {
    let (reg, old_key) = registry();
    let mut dev = (*reg.by_id("shop").unwrap()).clone();
    dev.public_key = Some("pk_live_dev".into());
    let fresh = new_api_key().unwrap();
    let reg = reg.with_client(dev, api_key_hash(&fresh.key));
    assert_eq!(reg.len(), 2);
    assert_eq!(reg.by_api_key(&fresh.key).unwrap().id, "shop");
    // The replaced client's old key and public key are gone.
    assert!(reg.by_api_key(&old_key).is_none());
    assert!(reg.by_public_key("pk_live_shop").is_none());
    assert_eq!(reg.by_public_key("pk_live_dev").unwrap().id, "shop");
    let dbg = format!("{reg:?}");
    assert_eq!(dbg, "ClientRegistry { clients: [\"other\", \"shop\"], api_keys: 1 }");
}

#[test]
fn registry_refuses_duplicates() {
    let mut twice = vec![Client::new("a", "a"), Client::new("a", "a")];
    assert_eq!(
        ClientRegistry::from_clients(&twice).unwrap_err(),
        ClientError::DuplicateId("a".into())
    );
    twice[1].id = "b".into();
    twice[0].public_key = Some("pk_live_x".into());
    twice[1].public_key = Some("pk_live_x".into());
    assert!(matches!(
        ClientRegistry::from_clients(&twice),
        Err(ClientError::DuplicatePublicKey { .. })
    ));
    twice[1].public_key = None;
    twice[0].api_keys = vec![[7; 32]];
    twice[1].api_keys = vec![[8; 32], [7; 32]];
    assert_eq!(
        ClientRegistry::from_clients(&twice).unwrap_err(),
        ClientError::DuplicateApiKey {
            client: "b".into(),
            other: "a".into(),
            index: 1
        }
    );
    // A hash listed twice by one client names that client.
    twice[1].api_keys = vec![[8; 32], [9; 32], [8; 32]];
    assert_eq!(
        ClientRegistry::from_clients(&twice).unwrap_err(),
        ClientError::DuplicateApiKey {
            client: "b".into(),
            other: "b".into(),
            index: 2
        }
    );
    // A refused client leaves nothing behind.
    let mut reg = ClientRegistry::from_clients(&twice[..1]).unwrap();
    assert!(reg.insert(twice[1].clone()).is_err());
    assert_eq!(reg.len(), 1);
    assert!(reg.by_id("b").is_none() && reg.entry(&[8; 32]).is_none());
    twice[1].api_keys = vec![[8; 32]];
    reg.insert(twice[1].clone()).unwrap();
    assert_eq!(reg.by_id("b").unwrap().api_keys, vec![[8; 32]]);
}

#[test]
fn debug_shows_hashes_short() {
    let c = Client {
        api_keys: vec![api_key_hash("sk_live_example")],
        ..Client::new("a", "a")
    };
    let dbg = format!("{c:?}");
    assert!(dbg.contains("api_keys: [\"sha256:edc02449…\"]"), "{dbg}");
    assert!(!dbg.contains("edc0244907"), "{dbg}");
}

#[test]
fn origin_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("https://shop.example.com", "https://shop.example.com", true),
        ("https://shop.example.com", "HTTPS://Shop.Example.COM", true),
        ("https://Shop.EXAMPLE.com", "https://shop.example.com", true),
        ("https://shop.example.com", "https://shop.example.com/", false),
        ("https://shop.example.com", "https://shop.example.com/path", false),
        ("https://shop.example.com", "https://shop.example.com?q=1", false),
        ("https://shop.example.com", "https://shop.example.com#f", false),
        ("https://shop.example.com", "https://shop.example.com:443", true),
        ("https://shop.example.com:443", "https://shop.example.com", true),
        ("https://shop.example.com", "https://shop.example.com:8443", false),
        ("https://shop.example.com", "https://shop.example.com:", false),
        ("https://shop.example.com", "https://shop.example.com:0443", false),
        ("https://shop.example.com", "http://shop.example.com", false),
        ("https://shop.example.com", "null", false),
        ("https://shop.example.com", "", false),
        ("https://shop.example.com", " https://shop.example.com", false),
        ("https://shop.example.com", "https://shop.example.com\t", false),
        ("https://shop.example.com", "https://shop.example.com.evil.com", false),
        ("https://shop.example.com", "https://evilshop.example.com", false),
        ("https://shop.example.com", "https://shop.example.com.", false),
        ("https://shop.example.com", "https://user@shop.example.com", false),
        ("https://shop.example.com", "https://evil.com@shop.example.com", false),
        ("https://shop.example.com", "https://shop.example.com\\@evil.com", false),
        ("https://shop.example.com", "shop.example.com", false),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example", true),
        ("https://xn--bcher-kva.example", "https://bücher.example", false),
        ("http://localhost:*", "http://localhost:3000", true),
        ("http://localhost:*", "http://localhost:65535", true),
        ("http://localhost:*", "http://localhost", true),
        ("http://localhost:*", "http://localhost.evil.com:3000", false),
        ("http://localhost:*", "http://evil.localhost:3000", false),
        ("http://localhost:*", "https://localhost:3000", false),
        ("http://localhost:*", "http://localhost:*", false),
        ("http://localhost:*", "http://localhost:99999", false),
        ("http://localhost:3000", "http://localhost:3001", false),
        ("https://*.example.com", "https://a.example.com", true),
        ("https://*.example.com", "https://A-1.Example.com", true),
        ("https://*.example.com", "https://a.b.example.com", false),
        ("https://*.example.com", "https://example.com", false),
        ("https://*.example.com", "https://.example.com", false),
        ("https://*.example.com", "https://aexample.com", false),
        ("https://*.example.com", "https://a.example.com.evil.com", false),
        ("https://*.example.com", "https://*.example.com", false),
        ("https://*.example.com", "http://a.example.com", false),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080", true),
        ("http://[::1]:3000", "http://[0:0::1]:3000", true),
        ("http://[::1]:3000", "http://[::2]:3000", false),
        ("http://[::1]", "http://[::1]", true),
        ("https://[::1]", "https://[::1]:443", true),
    ];
    assert!(cases.len() >= 15);
    for &(pattern, origin, expected) in cases {
        let p = OriginPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        assert_eq!(p.matches(origin), expected, "{pattern} vs {origin:?}");
    }
    // A client checks all of its patterns.
    let (reg, _) = registry();
    let shop = reg.by_id("shop").unwrap();
    assert!(shop.origin_allowed("https://shop.example.com"));
    assert!(shop.origin_allowed("http://localhost:5173"));
    assert!(!shop.origin_allowed("https://other.example.com"));
    assert!(!shop.origin_allowed("null"));
    assert!(!reg.by_id("other").unwrap().origin_allowed("https://shop.example.com"));
}

#[test]
fn origin_patterns_refused() {
    let bad = [
        "null",
        "",
        "*",
        "https://*",
        "https://*.com",
        "https://*.0.1",
        "https://shop.*.com",
        "https://sh*p.example.com",
        "https://**.example.com",
        "https://shop.example.com/",
        "https://shop.example.com/app",
        "https://user@shop.example.com",
        "ftp://shop.example.com",
        "shop.example.com",
        "https://bücher.example",
        "https://shop.example.com:0",
        "https://shop.example.com:65536",
        "https://shop.example.com:*3",
        "https://shop..example.com",
        "https://[::1",
        "https://[nothex]",
        " https://shop.example.com",
    ];
    for s in bad {
        assert!(OriginPattern::parse(s).is_err(), "{s:?} was accepted");
    }
}

#[test]
fn origin_patterns_display_normalised() {
    for (input, shown) in [
        ("HTTPS://Shop.Example.com:443", "https://shop.example.com"),
        ("http://localhost:*", "http://localhost:*"),
        ("https://*.Example.com", "https://*.example.com"),
        ("http://[0:0::1]:3000", "http://[::1]:3000"),
    ] {
        assert_eq!(OriginPattern::parse(input).unwrap().to_string(), shown);
    }
}

/// A public key is "pk_" and 5 to 125 URL-safe characters: tested at both
/// ends of the length, with each punctuation allowed and some that are not.
#[test]
fn public_keys_are_checked_at_their_bounds() {
    let longest = format!("pk_{}", "a".repeat(125));
    for good in ["pk_abcde", longest.as_str(), "pk_a-b_c", "pk_AZ_09z"] {
        assert!(check_public_key(good).is_ok(), "{good:?}");
    }
    let too_long = format!("pk_{}", "a".repeat(126));
    for bad in [
        "pk_abcd",
        too_long.as_str(),
        "pk_abc.de",
        "pk_abc de",
        "pk_abc/de",
        "pk_abcd%",
        "xk_abcde",
        "PK_abcde",
    ] {
        assert!(check_public_key(bad).is_err(), "{bad:?}");
    }
    // An API key in the public slot is refused and not echoed.
    let secret = "sk_live_aaaaaaaaaaaa";
    let e = check_public_key(secret).unwrap_err();
    assert!(!e.contains(secret), "{e}");
}

/// A host of `len` bytes: labels of 49 letters and a last, shorter one.
fn host_of(len: usize) -> String {
    let mut h = String::new();
    while len - h.len() > 50 {
        h.push_str(&"a".repeat(49));
        h.push('.');
    }
    h.push_str(&"b".repeat(len - h.len()));
    h
}

/// The lengths are tested at the bound: a host of exactly 253 bytes is
/// allowed and 254 is not; a label of 63 is and 64 is not; a pattern of
/// exactly MAX_ORIGIN_LEN bytes is not refused for its length (its host
/// is, for its own), one byte more is.
#[test]
fn origin_lengths_are_checked_at_the_bound() {
    let at = format!("https://{}", host_of(253));
    assert_eq!(at.len(), 8 + 253);
    assert!(OriginPattern::parse(&at).unwrap().matches(&at));
    let e = OriginPattern::parse(&format!("https://{}", host_of(254))).unwrap_err();
    assert!(e.contains("longer than 253"), "{e}");
    let label = |n: usize| format!("https://{}.example.com", "c".repeat(n));
    assert!(OriginPattern::parse(&label(63)).unwrap().matches(&label(63)));
    assert!(OriginPattern::parse(&label(64)).is_err());
    let at_cap = format!("https://{}", host_of(MAX_ORIGIN_LEN - 8));
    assert_eq!(at_cap.len(), MAX_ORIGIN_LEN);
    let e = OriginPattern::parse(&at_cap).unwrap_err();
    assert!(e.contains("longer than 253"), "{e}");
    let over = format!("https://{}", host_of(MAX_ORIGIN_LEN - 7));
    assert_eq!(OriginPattern::parse(&over).unwrap_err(), "is too long");
    for empty in ["https://", "https://:443"] {
        let e = OriginPattern::parse(empty).unwrap_err();
        assert!(e.contains("host is empty"), "{empty:?}: {e}");
    }
}

/// A host label is letters, digits, '-' and '_'; any other character is
/// refused, and whitespace or a control character is named as such.
#[test]
fn origin_hosts_allow_only_label_characters() {
    let p = OriginPattern::parse("https://my_shop-1.example.com").unwrap();
    assert!(p.matches("https://MY_SHOP-1.example.com"));
    for bad in [
        "https://sh!p.example.com",
        "https://sh$p.example.com",
        "https://sh+p.example.com",
    ] {
        let e = OriginPattern::parse(bad).unwrap_err();
        assert!(e.contains("is not a DNS label"), "{bad:?}: {e}");
    }
    for (bad, why) in [
        ("https://shop.example.com ", "whitespace"),
        ("https://shop\u{1}.example.com", "control"),
    ] {
        let e = OriginPattern::parse(bad).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

/// A client made in code gets what a config entry naming nothing else gets:
/// `max_ttl` of the embedded 24h, refresh tokens of 24h in families of 30d,
/// as the defaults' documented texts say.
#[test]
fn a_new_client_has_the_documented_defaults() {
    let c = Client::new("shop", "chatbot");
    let hours = |h: u64| Duration::from_secs(h * 60 * 60);
    assert_eq!(c.max_ttl, hours(24));
    assert_eq!((c.refresh_ttl, DEFAULT_REFRESH_TTL), (hours(24), (hours(24), "24h")));
    assert_eq!(
        (c.refresh_family_ttl, DEFAULT_REFRESH_FAMILY_TTL),
        (hours(30 * 24), (hours(30 * 24), "30d"))
    );
    assert!(c.api_keys.is_empty() && c.public_key.is_none() && c.allowed_origins.is_empty());
}

/// Every client is iterated once, and any of them may allow an origin.
#[test]
fn iteration_and_any_origin_cover_every_client() {
    let (reg, _) = registry();
    let mut ids: Vec<&str> = reg.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["other", "shop"]);
    assert!(reg.any_origin_allowed("https://shop.example.com"));
    assert!(reg.any_origin_allowed("http://localhost:8080"));
    assert!(!reg.any_origin_allowed("https://evil.example.com"));
    let empty = ClientRegistry::default();
    assert_eq!((empty.len(), empty.is_empty(), empty.iter().count()), (0, true, 0));
    assert!(!empty.any_origin_allowed("https://shop.example.com"));
}

/// The config check shows these: each names the entry that repeats and the
/// one it repeats, and says what they share.
#[test]
fn duplicate_errors_name_both_clients_and_what_they_share() {
    let id = ClientError::DuplicateId("shop".into()).to_string();
    assert!(id.contains("shop") && id.contains("id is used twice"), "{id}");
    let pk = ClientError::DuplicatePublicKey {
        client: "beta".into(),
        other: "shop".into(),
    }
    .to_string();
    assert!(
        pk.starts_with("client beta:") && pk.contains("public key as client shop"),
        "{pk}"
    );
    let key = ClientError::DuplicateApiKey {
        client: "beta".into(),
        other: "shop".into(),
        index: 1,
    }
    .to_string();
    assert!(
        key.starts_with("client beta:") && key.contains("API key hash is also listed for client shop"),
        "{key}"
    );
}
