//! The one DER structure the jose layer must read and write itself:
//! PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
//!
//! Both providers hand out an RSA public key in this form and take it back
//! for verification; a JWK carries the two integers. The parser is strict
//! (definite lengths, minimal length encoding, nothing trailing) and never
//! panics on any input.

use super::JoseError;

fn bad(what: &str) -> JoseError {
    JoseError::InvalidKey(format!("RSA public key DER: {what}"))
}

/// Reads one TLV with the expected tag; returns (contents, rest).
fn read_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), JoseError> {
    let (&t, rest) = input.split_first().ok_or_else(|| bad("truncated"))?;
    if t != tag {
        return Err(bad("unexpected tag"));
    }
    let (&first, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 3 || rest.len() < count {
            return Err(bad("bad length"));
        }
        let (bytes, rest) = rest.split_at(count);
        if bytes[0] == 0 {
            return Err(bad("non-minimal length"));
        }
        let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return Err(bad("non-minimal length"));
        }
        (len, rest)
    };
    if rest.len() < len {
        return Err(bad("truncated"));
    }
    Ok(rest.split_at(len))
}

/// A positive INTEGER's magnitude, without the sign-padding zero byte.
fn read_positive(input: &[u8]) -> Result<(Vec<u8>, &[u8]), JoseError> {
    let (v, rest) = read_tlv(input, 0x02)?;
    match v {
        [] => Err(bad("empty integer")),
        [b, ..] if b & 0x80 != 0 => Err(bad("negative integer")),
        [0, next, ..] if next & 0x80 == 0 => Err(bad("non-minimal integer")),
        [0, tail @ ..] if !tail.is_empty() => Ok((tail.to_vec(), rest)),
        [0] => Err(bad("zero integer")),
        _ => Ok((v.to_vec(), rest)),
    }
}

/// Parses `RSAPublicKey` into (n, e), big-endian without leading zeros.
pub fn parse_rsa_public_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), JoseError> {
    let (seq, rest) = read_tlv(der, 0x30)?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    let (n, seq) = read_positive(seq)?;
    let (e, seq) = read_positive(seq)?;
    if !seq.is_empty() {
        return Err(bad("trailing bytes in sequence"));
    }
    Ok((n, e))
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

fn push_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let trimmed = strip_zeros(magnitude);
    let pad = trimmed.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    push_len(out, trimmed.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let skip = v.iter().take_while(|&&b| b == 0).count();
    &v[skip..]
}

/// Encodes (n, e) as `RSAPublicKey`.
pub fn encode_rsa_public_key(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    push_integer(&mut body, n);
    push_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// The bit length of a big-endian unsigned integer.
pub fn unsigned_bits(v: &[u8]) -> usize {
    let v = strip_zeros(v);
    match v.first() {
        None => 0,
        Some(&top) => v.len() * 8 - top.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn round_trips_and_strips_sign_padding() {
        let n = [0xc5u8; 256];
        let e = [0x01, 0x00, 0x01];
        let der = encode_rsa_public_key(&n, &e);
        let (n2, e2) = parse_rsa_public_key(&der).unwrap();
        assert_eq!(n2, n);
        assert_eq!(e2, e);
        assert_eq!(unsigned_bits(&n), 2048);
        assert_eq!(unsigned_bits(&[0, 0, 1]), 1);
    }

    #[test]
    fn refuses_malformed_encodings_without_panicking() {
        let good = encode_rsa_public_key(&[0x80; 8], &[3]);
        for cut in 0..good.len() {
            assert!(parse_rsa_public_key(&good[..cut]).is_err());
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_rsa_public_key(&trailing).is_err());
        // negative modulus, non-minimal integer, long-form length for a short body
        assert!(parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x03]).is_err());
        assert!(parse_rsa_public_key(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x03]).is_err());
        assert!(parse_rsa_public_key(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]).is_err());
    }

    /// Lengths take the short form up to 127 and the long form of one, two
    /// and three bytes above it, each at its first value.
    #[test]
    fn lengths_round_trip_at_every_form_boundary() {
        for len in [127, 128, 255, 256, 65_535, 65_536] {
            let n = vec![0x45; len];
            let der = encode_rsa_public_key(&n, &[3]);
            assert_eq!(parse_rsa_public_key(&der).unwrap(), (n, vec![3]), "{len}");
        }
        let der = encode_rsa_public_key(&[0x45; 128], &[3]);
        assert_eq!(der[..7], [0x30, 0x81, 0x86, 0x02, 0x81, 0x80, 0x45]);
        let der = encode_rsa_public_key(&[0x45; 65_536], &[3]);
        assert_eq!(der[..6], [0x30, 0x83, 0x01, 0x00, 0x08, 0x02]);
    }

    /// A length of 0x80 in one byte is BER's indefinite form, not 128.
    #[test]
    fn the_indefinite_length_is_refused() {
        // INTEGER of 123 bytes, INTEGER 3: a body of exactly 128 bytes.
        let body = [&[0x02, 0x7b][..], &[0x45; 123], &[0x02, 0x01, 0x03]].concat();
        let definite = [&[0x30, 0x81, 0x80][..], &body].concat();
        assert_eq!(parse_rsa_public_key(&definite).unwrap(), (vec![0x45; 123], vec![3]));
        let indefinite = [&[0x30, 0x80][..], &body].concat();
        assert!(parse_rsa_public_key(&indefinite).is_err());
    }

    /// Every prefix of a key with three-byte lengths is refused without a
    /// panic; one that ends right after a complete length is "truncated".
    #[test]
    fn truncated_long_forms_are_refused() {
        let der = encode_rsa_public_key(&[0x45; 65_536], &[3]);
        for cut in 0..der.len() {
            assert!(parse_rsa_public_key(&der[..cut]).is_err(), "{cut}");
        }
        assert_eq!(parse_rsa_public_key(&der[..5]).unwrap_err(), bad("truncated"));
        assert_eq!(parse_rsa_public_key(&der[..4]).unwrap_err(), bad("bad length"));
    }

    #[test]
    fn empty_and_zero_integers_are_refused() {
        for der in [
            &[0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x03][..],
            &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x03],
            &[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x00],
            &[0x30, 0x05, 0x02, 0x01, 0x05, 0x02, 0x00],
        ] {
            assert!(parse_rsa_public_key(der).is_err(), "{der:02x?}");
        }
        assert_eq!(
            parse_rsa_public_key(&[0x30, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03]).unwrap(),
            (vec![5], vec![3])
        );
    }
}
