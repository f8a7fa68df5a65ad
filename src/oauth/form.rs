//! `application/x-www-form-urlencoded` bodies, read strictly.
//!
//! This module owns the one parser of OAuth 2.0 request bodies: `&`-separated
//! `name=value` pairs, `+` for a space, `%XX` escapes that must be two hex
//! digits, and names and values that must decode to UTF-8. A parameter may
//! appear once (RFC 6749 §3.2), except the few that a later RFC lets repeat
//! (`audience`, `resource`: RFC 8693 §2.1, RFC 8707 §2); one sent without a
//! value counts as omitted (RFC 6749 §3.1). Parameters nobody asks for are
//! ignored (§3.2). It never logs or echoes a value: only parameter names
//! appear in its errors, since values carry secrets and tokens.

use super::RequestError;

/// Parameters that RFC 8693 and RFC 8707 let a request repeat.
pub const REPEATABLE: [&str; 2] = ["audience", "resource"];

/// A parsed form: every parameter once (but the [`REPEATABLE`] ones), in order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl std::fmt::Debug for Form {
    // Names only: values are secrets and tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.pairs.iter().map(|(k, _)| k)).finish()
    }
}

/// The value of one hex digit.
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one name or value: `+` is a space, `%XX` a byte; the result must
/// be UTF-8. `what` names the part for the error (never its content).
pub(super) fn decode(part: &[u8], what: &str) -> Result<String, RequestError> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        match part[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = match (
                    part.get(i + 1).copied().and_then(hex),
                    part.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(hi), Some(lo)) => hi * 16 + lo,
                    _ => {
                        return Err(RequestError::InvalidRequest(format!(
                            "{what}: '%' must be followed by two hex digits"
                        )))
                    }
                };
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| RequestError::InvalidRequest(format!("{what} is not UTF-8")))
}

impl Form {
    /// Parses `body`. A parameter named twice (but the [`REPEATABLE`]
    /// ones), a bad escape or bytes that are not UTF-8 are `invalid_request`.
    pub fn parse(body: &[u8]) -> Result<Form, RequestError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for piece in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match piece.iter().position(|b| *b == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &[][..]),
            };
            let name = decode(name, "a parameter name")?;
            let value = decode(value, &format!("the value of {name:?}"))?;
            if !REPEATABLE.contains(&name.as_str()) {
                if seen.contains(&name) {
                    return Err(RequestError::InvalidRequest(format!(
                        "the parameter {name:?} appears more than once (RFC 6749 §3.2)"
                    )));
                }
                seen.push(name.clone());
            }
            // RFC 6749 §3.1: a parameter without a value is as if omitted.
            if !value.is_empty() {
                pairs.push((name, value));
            }
        }
        Ok(Form { pairs })
    }

    /// The value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The value of `name`, owned, if sent.
    pub fn take(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_owned)
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<String, RequestError> {
        self.take(name)
            .ok_or_else(|| RequestError::InvalidRequest(format!("the parameter {name:?} is missing")))
    }

    /// Every value of a [`REPEATABLE`] parameter, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn code(body: &str) -> &'static str {
        match Form::parse(body.as_bytes()) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn decodes_plus_escapes_and_utf8() {
        let f = Form::parse(b"a=x+y%2Bz&b=%C3%A9&c=&d&e=1=2").unwrap();
        assert_eq!(f.get("a"), Some("x y+z"));
        assert_eq!(f.get("b"), Some("é"));
        // Sent without a value: as if omitted.
        assert_eq!(f.get("c"), None);
        assert_eq!(f.get("d"), None);
        assert_eq!(f.get("e"), Some("1=2"));
        assert_eq!(format!("{f:?}"), r#"["a", "b", "e"]"#);
        assert!(f.require("zz").is_err());
    }

    /// Hex digits of either case, each digit its own value: every one of
    /// `0-9a-fA-F` in both places of an escape.
    #[test]
    fn escapes_take_hex_digits_of_either_case() {
        let f = Form::parse(b"a=%3a%3A%2f%2F%7e%7E&b=%c3%a9%C3%A9&c=%4a%4b%4c%4d%4e%4f%61%62%63%64%65%66").unwrap();
        assert_eq!(f.get("a"), Some(concat!("::", "//", "~~")));
        assert_eq!(f.get("b"), Some("éé"));
        assert_eq!(f.get("c"), Some("JKLMNOabcdef"));
        // Every ASCII byte, escaped in lower and in upper case.
        let ascii: String = (0u8..128).map(|b| format!("%{b:02x}%{b:02X}")).collect();
        let expected: String = (0u8..128).flat_map(|b| [char::from(b), char::from(b)]).collect();
        assert_eq!(decode(ascii.as_bytes(), "v").unwrap(), expected);
    }

    #[test]
    fn repeats_bad_escapes_and_non_utf8_are_invalid_requests() {
        for body in [
            "grant_type=a&grant_type=a",
            "scope=a&scope=",
            "a=%zz",
            "a=%4",
            "a=%",
            "%FF=1",
            "a=%FF%FE",
        ] {
            assert_eq!(code(body), "invalid_request", "{body}");
        }
        let f = Form::parse(b"audience=a&resource=https%3A%2F%2Fr&audience=b").unwrap();
        assert_eq!(f.all("audience"), vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(f.all("resource"), vec!["https://r".to_owned()]);
        let e = Form::parse(b"client_secret=sk_x&client_secret=sk_x").unwrap_err();
        assert!(!e.to_string().contains("sk_x"), "{e}");
    }
}
