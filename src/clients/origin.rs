//! Matching a browser's `Origin` header (RFC 6454) against a client's
//! allowlist of origin patterns.

use std::fmt;
use std::net::Ipv6Addr;

use super::MAX_ORIGIN_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// Lowercase; an IPv6 literal in its canonical bracketed form.
    Exact(String),
    /// `*.example.com`: one label, any, in front of this (lowercase) suffix.
    OneLabelUnder(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    Exact(u16),
    Any,
}

/// A configured allowed origin: `scheme://host[:port]`, where `*` may be the
/// whole leftmost host label (`https://*.example.com`: exactly one label) or
/// the whole port (`http://localhost:*`: any port, the default one included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: Scheme,
    host: HostPattern,
    port: PortPattern,
}

/// A presented `Origin`, normalised: lowercase, port made explicit.
pub(super) struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    pub(super) fn parse(s: &str) -> Result<Origin, String> {
        let (scheme, host, port) = split_origin(s, false)?;
        match (host, port) {
            (HostPattern::Exact(host), PortPattern::Exact(port)) => Ok(Origin { scheme, host, port }),
            // Not produced without wildcards; refused rather than trusted.
            _ => Err("wildcards are only for configured patterns".to_owned()),
        }
    }
}

impl OriginPattern {
    /// Parses a configured pattern; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<OriginPattern, String> {
        let (scheme, host, port) = split_origin(s, true)?;
        Ok(OriginPattern { scheme, host, port })
    }

    /// Whether a presented `Origin` header value matches. Anything that is
    /// not exactly a serialized origin (path, userinfo, whitespace,
    /// non-ASCII, `null`) matches nothing.
    pub fn matches(&self, origin: &str) -> bool {
        Origin::parse(origin).is_ok_and(|o| self.matches_origin(&o))
    }

    pub(super) fn matches_origin(&self, o: &Origin) -> bool {
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(p) => p == o.port,
        };
        let host_ok = match &self.host {
            HostPattern::Exact(h) => *h == o.host,
            // The part in front of ".suffix" must be one whole label: the
            // host was checked label by label, so "no dot" is enough.
            HostPattern::OneLabelUnder(suffix) => o
                .host
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        };
        self.scheme == o.scheme && port_ok && host_ok
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        match &self.host {
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::OneLabelUnder(suffix) => write!(f, "*.{suffix}")?,
        }
        match self.port {
            PortPattern::Any => f.write_str(":*"),
            PortPattern::Exact(p) if p == self.scheme.default_port() => Ok(()),
            PortPattern::Exact(p) => write!(f, ":{p}"),
        }
    }
}

/// The one parser for presented origins and configured patterns; wildcards
/// only when `wildcards`.
fn split_origin(s: &str, wildcards: bool) -> Result<(Scheme, HostPattern, PortPattern), String> {
    if s.is_empty() {
        return Err("is empty".to_owned());
    }
    if s == "null" {
        return Err("\"null\" is never allowed: sandboxed frames and local files all send it".to_owned());
    }
    if s.len() > MAX_ORIGIN_LEN {
        return Err("is too long".to_owned());
    }
    if !s.is_ascii() {
        return Err("is not ASCII: write an internationalised domain in punycode (xn--…)".to_owned());
    }
    if s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err("contains whitespace or control characters".to_owned());
    }
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| "is not scheme://host[:port]".to_owned())?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err("the scheme is not http or https".to_owned()),
    };
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(
            "must be scheme://host[:port] alone: no path (not even a trailing /), query, fragment \
                    or user@"
                .to_owned(),
        );
    }
    let (host, port) = split_host_port(rest)?;
    let port = match port {
        None => PortPattern::Exact(scheme.default_port()),
        Some("*") if wildcards => PortPattern::Any,
        Some(p) => PortPattern::Exact(parse_port(p)?),
    };
    Ok((scheme, parse_host(host, wildcards)?, port))
}

fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.starts_with('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| "an IPv6 address lacks its ']'".to_owned())?;
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after the IPv6 address".to_owned()),
            },
        };
    }
    match rest.split_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((rest, None)),
    }
}

/// Only the canonical spelling: what a browser sends (no sign, no leading zero).
fn parse_port(p: &str) -> Result<u16, String> {
    let bad = || format!("port {p:?} is not a number from 1 to 65535");
    if p.is_empty() || p.len() > 5 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    p.parse::<u16>().map_err(|_| bad())
}

fn parse_host(host: &str, wildcards: bool) -> Result<HostPattern, String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let addr: Ipv6Addr = inner.parse().map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        return Ok(HostPattern::Exact(format!("[{addr}]")));
    }
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 {
        return Err("the host is empty or longer than 253 characters".to_owned());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let wildcard = wildcards && labels.first() == Some(&"*");
    let rest = if wildcard {
        labels.get(1..).unwrap_or(&[])
    } else {
        &labels[..]
    };
    if rest.iter().any(|l| l.contains('*')) {
        return Err("'*' may only be the whole leftmost label (https://*.example.com) or the whole port".to_owned());
    }
    if let Some(l) = rest.iter().find(|l| !valid_label(l)) {
        return Err(format!(
            "{l:?} is not a DNS label (letters, digits, '-', '_'; punycode for others)"
        ));
    }
    if !wildcard {
        return Ok(HostPattern::Exact(host));
    }
    // `*.com` or `*.0.1` would allow far more than anyone means.
    let numeric_tld = rest.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if rest.len() < 2 || numeric_tld {
        return Err("'*.' must be followed by a domain of at least two labels, such as *.example.com".to_owned());
    }
    Ok(HostPattern::OneLabelUnder(rest.join(".")))
}

fn valid_label(l: &str) -> bool {
    (1..=63).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
