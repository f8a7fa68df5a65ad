//! The metadata documents: RFC 8414 (`/.well-known/oauth-authorization-server`)
//! and OpenID Connect Discovery (`/.well-known/openid-configuration`).
//!
//! This module owns what they claim, which must be only what the service
//! does: the grants of the token endpoint (no authorization endpoint, so no
//! `authorization_code` or implicit grant and no response type), the client
//! authentication methods, the algorithms of the published keys, and the
//! scopes of the clients unless `[server] publish_scopes = false`. The
//! server computes the bytes once per key-ring snapshot.

use serde_json::{json, Map, Value};

use super::{
    endpoint, GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE, INTROSPECT_PATH, REVOKE_PATH,
    TOKEN_PATH,
};

/// The client authentication methods of every endpoint.
pub const AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "private_key_jwt"];

/// Algorithms accepted in `private_key_jwt` assertions: the asymmetric
/// algorithms this crate verifies.
pub const ASSERTION_ALGS: [&str; 4] = ["RS256", "PS256", "ES256", "EdDSA"];

/// What both documents are made from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataInput<'a> {
    /// The issuer served.
    pub issuer: &'a str,
    /// The algorithms of the published keys, in the JWKS's order.
    pub signing_algs: Vec<&'a str>,
    /// `scopes_supported`, or `None` to leave it out.
    pub scopes: Option<Vec<String>>,
}

/// The RFC 8414 document.
pub fn authorization_server(input: &MetadataInput<'_>) -> Map<String, Value> {
    let issuer = input.issuer;
    let endpoint_algs = json!(ASSERTION_ALGS);
    let mut doc = Map::new();
    let mut put = |k: &str, v: Value| {
        doc.insert(k.to_owned(), v);
    };
    put("issuer", json!(issuer));
    put("token_endpoint", json!(endpoint(issuer, TOKEN_PATH)));
    put("jwks_uri", json!(endpoint(issuer, "/.well-known/jwks.json")));
    put("introspection_endpoint", json!(endpoint(issuer, INTROSPECT_PATH)));
    put("revocation_endpoint", json!(endpoint(issuer, REVOKE_PATH)));
    put(
        "grant_types_supported",
        json!([GRANT_CLIENT_CREDENTIALS, GRANT_REFRESH_TOKEN, GRANT_TOKEN_EXCHANGE]),
    );
    // No authorization endpoint: no response type is supported.
    put("response_types_supported", json!([]));
    put("token_endpoint_auth_methods_supported", json!(AUTH_METHODS));
    put(
        "token_endpoint_auth_signing_alg_values_supported",
        endpoint_algs.clone(),
    );
    put("introspection_endpoint_auth_methods_supported", json!(AUTH_METHODS));
    put(
        "introspection_endpoint_auth_signing_alg_values_supported",
        endpoint_algs.clone(),
    );
    put("revocation_endpoint_auth_methods_supported", json!(AUTH_METHODS));
    put("revocation_endpoint_auth_signing_alg_values_supported", endpoint_algs);
    // RFC 9449 §5.1: the algorithms accepted in DPoP proofs.
    put(
        "dpop_signing_alg_values_supported",
        json!(crate::dpop::DPOP_ALGS.map(|a| a.as_str())),
    );
    if let Some(scopes) = &input.scopes {
        put("scopes_supported", json!(scopes));
    }
    doc
}

/// The OpenID Provider metadata: the RFC 8414 members plus those OpenID
/// Connect Discovery requires that the service can honestly fill.
pub fn openid_configuration(input: &MetadataInput<'_>) -> Map<String, Value> {
    let mut doc = authorization_server(input);
    doc.insert("subject_types_supported".into(), json!(["public"]));
    doc.insert(
        "id_token_signing_alg_values_supported".into(),
        json!(input.signing_algs),
    );
    doc
}

/// The union of `scopes`, sorted, without `*` (which grants any scope and
/// names none).
pub fn union_of_scopes<'a>(scopes: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = scopes.into_iter().filter(|s| *s != "*").cloned().collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn documents_claim_what_the_service_does() {
        let input = MetadataInput {
            issuer: "https://i.example/",
            signing_algs: vec!["RS256"],
            scopes: Some(union_of_scopes(&[
                "b".to_owned(),
                "*".to_owned(),
                "a".to_owned(),
                "b".to_owned(),
            ])),
        };
        let doc = authorization_server(&input);
        assert_eq!(doc["token_endpoint"], "https://i.example/oauth2/token");
        assert_eq!(doc["issuer"], "https://i.example/");
        assert_eq!(doc["scopes_supported"], json!(["a", "b"]));
        assert!(doc.get("authorization_endpoint").is_none());
        let oidc = openid_configuration(&MetadataInput { scopes: None, ..input });
        assert!(oidc.get("scopes_supported").is_none());
        assert_eq!(oidc["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(oidc["revocation_endpoint"], "https://i.example/oauth2/revoke");
    }
}
