//! Tests of `claims`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use serde_json::json;

const NOW: i64 = 1_700_000_000;

fn payload(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn good() -> Value {
    json!({"iss":"https://i","sub":"u1","aud":"chatbot","iat":NOW,"exp":NOW+300,"jti":"j1","scopes":["a","b"],"storeId":"st_1"})
}

fn with(key: &str, v: Value) -> Vec<u8> {
    let mut g = good();
    g[key] = v;
    payload(g)
}

fn without(key: &str) -> Vec<u8> {
    let mut g = good();
    g.as_object_mut().unwrap().remove(key);
    payload(g)
}

fn validation() -> Validation {
    Validation {
        audience: Some("chatbot".into()),
        ..Validation::new("https://i")
    }
}

fn code(p: &[u8], v: &Validation, now: i64) -> &'static str {
    match Claims::from_payload(p).and_then(|c| v.check(&c, now)) {
        Ok(()) => "ok",
        Err(r) => r.code(),
    }
}

#[test]
fn a_good_token_passes_and_round_trips() {
    let c = Claims::from_payload(&payload(good())).unwrap();
    validation().check(&c, NOW).unwrap();
    assert_eq!(c.extra["storeId"], "st_1");
    assert_eq!(Claims::from_payload(&c.to_json()).unwrap(), c);
    let v: Value = serde_json::from_slice(&c.to_json()).unwrap();
    assert_eq!(v["aud"], "chatbot");
    let many = Claims {
        aud: vec!["a".into(), "b".into()],
        scopes: vec![],
        ..c
    };
    let v: Value = serde_json::from_slice(&many.to_json()).unwrap();
    assert_eq!(v["aud"], json!(["a", "b"]));
    assert!(v.get("scopes").is_none());
}

#[test]
fn time_rules_with_leeway() {
    let v = validation();
    let p = payload(good());
    assert_eq!(code(&p, &v, NOW + 300 + 59), "ok");
    assert_eq!(code(&p, &v, NOW + 300 + 60), "token_expired");
    assert_eq!(code(&p, &v, NOW - 60), "ok");
    assert_eq!(code(&p, &v, NOW - 61), "issued_in_future");
    let nbf = with("nbf", json!(NOW + 100));
    assert_eq!(code(&nbf, &v, NOW + 40), "ok");
    assert_eq!(code(&nbf, &v, NOW + 39), "token_not_yet_valid");
    let long = with("exp", json!(NOW + 86_401));
    assert_eq!(code(&long, &v, NOW), "ttl_too_long");
    let strict = Validation {
        leeway: 0,
        ..validation()
    };
    let err = Claims::from_payload(&p)
        .and_then(|c| strict.check(&c, NOW + 342))
        .unwrap_err();
    assert_eq!(err.to_string(), "expired 42s ago");
}

#[test]
fn issuer_audience_subject_jti_and_scopes() {
    let v = validation();
    assert_eq!(code(&with("iss", json!("https://j")), &v, NOW), "wrong_issuer");
    assert_eq!(code(&with("aud", json!("other")), &v, NOW), "wrong_audience");
    assert_eq!(code(&with("aud", json!(["other", "chatbot"])), &v, NOW), "ok");
    assert_eq!(code(&without("aud"), &v, NOW), "wrong_audience");
    for claim in ["exp", "iat", "iss", "sub", "jti"] {
        assert_eq!(code(&without(claim), &v, NOW), "missing_claim", "{claim}");
    }
    assert_eq!(code(&with("sub", json!("")), &v, NOW), "missing_claim");
    let scoped = Validation {
        required_scopes: vec!["a".into(), "c".into()],
        ..validation()
    };
    assert_eq!(code(&payload(good()), &scoped, NOW), "insufficient_scope");
    let rfc9068 = {
        let mut g = good();
        g.as_object_mut().unwrap().remove("scopes");
        g["scope"] = json!("a c");
        payload(g)
    };
    assert_eq!(code(&rfc9068, &scoped, NOW), "ok");
}

#[test]
fn an_audience_is_required_unless_any_is_allowed_explicitly() {
    let none = Validation::new("https://i");
    assert_eq!(code(&payload(good()), &none, NOW), "wrong_audience");
    assert_eq!(code(&payload(good()), &none.clone().any_audience(), NOW), "ok");
    assert_eq!(code(&payload(good()), &none.clone().audience("chatbot"), NOW), "ok");
    assert_eq!(
        code(&payload(good()), &none.audience("other").any_audience(), NOW),
        "wrong_audience"
    );
    let c = Claims::from_payload(&payload(good())).unwrap();
    let v = Validation::new("https://i").scopes(["a"]);
    assert_eq!(v.check_for(&c, NOW, Some("chatbot"), &[]), Ok(()));
    assert_eq!(v.check(&c, NOW).unwrap_err().code(), "wrong_audience");
}

#[test]
fn wrong_types_are_rejections_never_absent() {
    let v = validation();
    for (k, val) in [
        ("exp", json!("never")),
        ("nbf", json!("99999999999")),
        ("iat", json!(null)),
        ("aud", json!(5)),
        ("aud", json!(["ok", 5])),
        ("sub", json!(7)),
        ("iss", json!(["https://i"])),
        ("jti", json!({})),
        ("scopes", json!("a b")),
        ("exp", json!(1e300)),
    ] {
        assert_eq!(code(&with(k, val.clone()), &v, NOW), "malformed_token", "{k}: {val}");
    }
    assert_eq!(code(&with("exp", json!(NOW as f64 + 300.5)), &v, NOW), "ok");
}

#[test]
fn duplicate_claims_are_malformed() {
    let dup = format!(
        r#"{{"iss":"https://i","sub":"u","aud":"chatbot","iat":{NOW},"exp":{},"exp":{},"jti":"j"}}"#,
        NOW + 10,
        NOW + 99_999
    );
    assert_eq!(code(dup.as_bytes(), &validation(), NOW), "malformed_token");
}

#[test]
fn registered_names_in_extra_never_override() {
    let mut c = Claims::from_payload(&payload(good())).unwrap();
    c.extra.insert("sub".into(), json!("admin"));
    c.extra.insert("exp".into(), json!(i64::MAX));
    let back: Value = serde_json::from_slice(&c.to_json()).unwrap();
    assert_eq!(back["sub"], "u1");
    assert_eq!(back["exp"], NOW + 300);
}

#[test]
fn a_required_typ_is_compared_as_rfc_7515_says() {
    let any = Validation::new("https://i");
    assert_eq!(any.check_typ(None), Ok(()));
    let at = Validation::new("https://i").typ("at+jwt");
    for ok in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
        assert_eq!(at.check_typ(Some(ok)), Ok(()), "{ok}");
    }
    for bad in [
        None,
        Some("JWT"),
        Some("jwt"),
        Some("application/jwt"),
        Some("at+jwt2"),
        Some(""),
    ] {
        assert_eq!(at.check_typ(bad).unwrap_err().code(), "malformed_token", "{bad:?}");
    }
}

#[test]
fn rfc9068_payloads_carry_scope_as_a_string() {
    let c = Claims::from_payload(&payload(good())).unwrap();
    let v: Value = serde_json::from_slice(&c.to_json_rfc9068()).unwrap();
    assert_eq!(v["scope"], "a b");
    assert!(v.get("scopes").is_none());
    assert_eq!(Claims::from_payload(&c.to_json_rfc9068()).unwrap().scopes, c.scopes);
    let none = Claims { scopes: vec![], ..c };
    let v: Value = serde_json::from_slice(&none.to_json_rfc9068()).unwrap();
    assert!(v.get("scope").is_none() && v.get("scopes").is_none());
}

#[test]
fn jti_is_128_bits_of_base64url() {
    let a = new_jti().unwrap();
    assert_eq!(a.len(), 22);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
    assert_ne!(a, new_jti().unwrap());
}

/// Each bound is tested at the bound: a lifetime of exactly `max_ttl` is
/// accepted and one second more is not (cargo-mutants turned `>` into `>=`).
#[test]
fn a_lifetime_of_exactly_max_ttl_passes() {
    let v = validation();
    assert_eq!(code(&with("exp", json!(NOW + 86_400)), &v, NOW), "ok");
    assert_eq!(code(&with("exp", json!(NOW + 86_401)), &v, NOW), "ttl_too_long");
    let short = Validation {
        max_ttl: 300,
        ..validation()
    };
    assert_eq!(code(&payload(good()), &short, NOW), "ok");
    assert_eq!(code(&with("exp", json!(NOW + 301)), &short, NOW), "ttl_too_long");
}

/// A fractional NumericDate is read while its magnitude is under 9e15 (so
/// that it floors to an exact i64) and refused at 9e15 itself, on either side
/// of zero (cargo-mutants turned `<` into `<=`).
#[test]
fn a_fractional_date_is_refused_from_9e15_on() {
    let exp = |text: &str| {
        let p = format!(r#"{{"iss":"https://i","sub":"u","iat":0,"exp":{text},"jti":"j"}}"#);
        Claims::from_payload(p.as_bytes()).map(|c| c.exp)
    };
    // serde_json reads decimals this long to within an ulp or two.
    for (text, near) in [
        ("8999999999999999.0", 8_999_999_999_999_999),
        ("-8.999999999999999e15", -8_999_999_999_999_999),
    ] {
        let read = exp(text).unwrap();
        assert!((read - near).abs() <= 2, "{text}: {read}");
    }
    assert_eq!(exp("-0.5"), Ok(-1));
    for bound in ["9e15", "-9e15", "9.0e15", "1e16"] {
        assert_eq!(exp(bound).unwrap_err().code(), "malformed_token", "{bound}");
    }
    // An integer is read as it is, however large.
    assert_eq!(exp("9000000000000000"), Ok(9_000_000_000_000_000));
}

/// Reserved: every registered claim and each of the service's own
/// (`client_id`, `sid`, `cnf`), each on its own; anything else, a near
/// miss of one of them included, is free for a client to allow.
#[test]
fn reserved_claims_are_the_registered_ones_and_the_services_own() {
    for name in REGISTERED.iter().copied().chain([CLIENT_ID, SID, CNF]) {
        assert!(is_reserved(name), "{name}");
    }
    for name in ["tier", "storeId", "client", "sids", "CNF", "", "scope_"] {
        assert!(!is_reserved(name), "{name}");
    }
}

/// The accessors of the service's own claims read them from the extra
/// claims: `client_id` and `sid` when they are strings, and `cnf.jkt` so
/// that a `cnf` of any other shape is bound to no key anyone has (`""`),
/// never unbound.
#[test]
fn client_id_sid_and_cnf_jkt_are_read_from_the_extra_claims() {
    let plain = Claims::from_payload(&payload(good())).unwrap();
    assert_eq!((plain.client_id(), plain.sid(), plain.cnf_jkt()), (None, None, None));
    let mut g = good();
    g[CLIENT_ID] = json!("shop");
    g[SID] = json!("fam_1");
    g[CNF] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let bound = Claims::from_payload(&payload(g.clone())).unwrap();
    assert_eq!(bound.client_id(), Some("shop"));
    assert_eq!(bound.sid(), Some("fam_1"));
    assert_eq!(bound.cnf_jkt(), Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
    for odd in [json!("jkt"), json!({"jkt": 7}), json!({}), json!(null)] {
        g[CNF] = odd.clone();
        let c = Claims::from_payload(&payload(g.clone())).unwrap();
        assert_eq!(c.cnf_jkt(), Some(""), "{odd}");
    }
    g[CLIENT_ID] = json!(5);
    g[SID] = json!(["fam_1"]);
    let odd = Claims::from_payload(&payload(g)).unwrap();
    assert_eq!((odd.client_id(), odd.sid()), (None, None));
}

/// `to_value` is the payload as JSON, for `verify` output.
#[test]
fn to_value_is_the_payload_as_json() {
    let c = Claims::from_payload(&payload(good())).unwrap();
    let v = c.to_value();
    assert_eq!(v, serde_json::from_slice::<Value>(&c.to_json()).unwrap());
    assert_eq!((v["sub"].as_str(), v["storeId"].as_str()), (Some("u1"), Some("st_1")));
}

/// Only a leading `application/` is dropped from a `typ`: twelve other
/// characters in front of `at+jwt` are not that prefix.
#[test]
fn a_typ_with_another_twelve_character_prefix_is_refused() {
    let at = Validation::new("https://i").typ("at+jwt");
    for bad in ["application-at+jwt", "applications/at+jwt", "xxxxxxxxxxxxat+jwt"] {
        assert_eq!(at.check_typ(Some(bad)).unwrap_err().code(), "malformed_token", "{bad}");
    }
    let long = Validation::new("https://i").typ("application/vnd.x+jwt");
    assert_eq!(long.check_typ(Some("vnd.x+jwt")), Ok(()));
    assert!(long.check_typ(Some("application+vnd.x+jwt")).is_err());
}
