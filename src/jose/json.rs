//! Strict JSON for JOSE headers and JWT claims.
//!
//! `serde_json` keeps the last of two members with the same name; RFC 7515
//! §5.2 and RFC 7519 §7.2 say a parser must either reject such objects or
//! use a parser that does. Two `exp` members that different libraries read
//! differently are an attack, so objects with duplicate members are refused
//! here, at every depth. Nesting is bounded by `serde_json`'s recursion limit
//! (128), so deeply nested input is an error, not a stack overflow.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Value};

use super::JoseError;

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

/// Reads what `serde_json` hands a visitor from bytes: it calls `visit_unit`
/// for `null` and `visit_str` (or `visit_borrowed_str`, which forwards to
/// it) for strings, never `visit_none` or `visit_string`, which are left to
/// their defaults here and in [`KeySeed`].
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One search per member: the duplicate check and the insertion share it.
            match out.entry(key) {
                Entry::Occupied(dup) => {
                    return Err(de::Error::custom(format_args!("duplicate member {:?}", dup.key())));
                }
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(StrictValue)?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses `bytes` as one UTF-8 JSON object with no duplicate members at any
/// depth and nothing after it.
pub fn parse_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, JoseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| JoseError::Malformed(format!("{what} is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(JoseError::Malformed(format!("{what} is not a JSON object"))),
    }
}

/// A member name: one of the names asked for (by index), or another.
enum Key {
    Slot(usize),
    Other(String),
}

struct KeySeed<'n, const N: usize>(&'n [&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for KeySeed<'_, N> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeySeed<'_, N> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        // Known names are matched without allocating.
        Ok(match self.0.iter().position(|n| *n == v) {
            Some(i) => Key::Slot(i),
            None => Key::Other(v.to_owned()),
        })
    }
}

/// One strict object, split: the members named in `names` by position,
/// everything else in a map.
pub struct Split<const N: usize> {
    pub slots: [Option<Value>; N],
    pub rest: Map<String, Value>,
}

struct SplitSeed<'n, const N: usize>(&'n [&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for SplitSeed<'_, N> {
    type Value = Split<N>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Split<N>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for SplitSeed<'_, N> {
    type Value = Split<N>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Split<N>, A::Error> {
        let mut out = Split {
            slots: std::array::from_fn(|_| None),
            rest: Map::new(),
        };
        while let Some(key) = map.next_key_seed(KeySeed(self.0))? {
            match key {
                Key::Slot(i) => {
                    if out.slots[i].is_some() {
                        return Err(de::Error::custom(format_args!("duplicate member {:?}", self.0[i])));
                    }
                    out.slots[i] = Some(map.next_value_seed(StrictValue)?);
                }
                Key::Other(name) => match out.rest.entry(name) {
                    Entry::Occupied(dup) => {
                        return Err(de::Error::custom(format_args!("duplicate member {:?}", dup.key())));
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(map.next_value_seed(StrictValue)?);
                    }
                },
            }
        }
        Ok(out)
    }
}

/// [`parse_object`], with the members named in `names` taken out into
/// slots as they are read: the hot path of claims parsing, which then never
/// allocates a name or a map entry for a registered claim. The same rules
/// hold: one UTF-8 object, no duplicate member at any depth, nothing after.
pub fn parse_object_split<const N: usize>(
    bytes: &[u8],
    what: &'static str,
    names: &[&'static str; N],
) -> Result<Split<N>, JoseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    SplitSeed(names)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| JoseError::Malformed(format!("{what} is not a valid JSON object: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(parse_object(br#"{"a":1,"a":2}"#, "x").is_err());
        assert!(parse_object(br#"{"a":{"b":1,"b":1}}"#, "x").is_err());
        assert!(parse_object(br#"{"a":[{"b":1,"b":1}]}"#, "x").is_err());
        // JSON escapes spell the same name: still a duplicate
        assert!(parse_object(br#"{"exp":1,"\u0065xp":2}"#, "x").is_err());
        assert!(parse_object(br#"{"a":1,"b":{"a":2}}"#, "x").is_ok());
    }

    #[test]
    fn split_parsing_keeps_every_rule() {
        const NAMES: [&str; 2] = ["exp", "sub"];
        let s = parse_object_split(br#"{"exp":1,"x":{"y":2},"sub":"a"}"#, "x", &NAMES).unwrap();
        assert_eq!(s.slots[0], Some(Value::from(1)));
        assert_eq!(s.slots[1], Some(Value::from("a")));
        assert_eq!(s.rest["x"]["y"], 2);
        for bad in [
            &br#"{"exp":1,"exp":2}"#[..],
            br#"{"exp":1,"\u0065xp":2}"#,
            br#"{"x":1,"x":2}"#,
            br#"{"x":{"y":1,"y":1}}"#,
            b"[]",
            b"{} {}",
            b"{\"sub\":\"\xff\"}",
        ] {
            assert!(parse_object_split(bad, "x", &NAMES).is_err(), "{bad:?}");
        }
    }

    /// Every JSON type reads as `serde_json` reads it, in both parsers.
    #[test]
    fn values_read_as_serde_json_reads_them() {
        let doc = br#"{"t":true,"f":false,"neg":-3,"big":18446744073709551615,"frac":1.5,
            "s":"plain","esc":"caf\u00e9","n":null,"arr":[1,"b",[],{}],"obj":{"k":{"l":null}}}"#;
        let expected: Map<String, Value> = serde_json::from_slice(doc).unwrap();
        assert_eq!(parse_object(doc, "x").unwrap(), expected);
        let split = parse_object_split(doc, "x", &["esc", "t"]).unwrap();
        assert_eq!(split.slots, [Some(Value::from("café")), Some(Value::Bool(true))]);
        let mut rest = expected;
        rest.remove("esc");
        rest.remove("t");
        assert_eq!(split.rest, rest);
    }

    /// Errors name what was expected. `serde_json` reaches only the split
    /// parser's message (an object was expected); the others are what any
    /// other deserializer would get.
    #[test]
    fn errors_name_what_was_expected() {
        let err = parse_object_split(b"[1]", "the header", &["alg"])
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("expected a JSON object"), "{err}");
        type Error = serde::de::value::Error;
        let bytes = serde::de::value::BytesDeserializer::<Error>::new(b"x");
        let err = StrictValue.deserialize(bytes).unwrap_err();
        assert_eq!(err.to_string(), "invalid type: byte array, expected a JSON value");
        let number = serde::de::value::U64Deserializer::<Error>::new(7);
        let err = KeySeed(&["alg"]).deserialize(number).map(|_| ()).unwrap_err();
        assert_eq!(err.to_string(), "invalid type: integer `7`, expected a member name");
    }

    #[test]
    fn refuses_non_objects_trailing_data_and_bad_utf8() {
        for bad in [&b"[]"[..], b"1", b"\"s\"", b"{} {}", b"{", b"{\"a\":\"\xff\"}", b""] {
            assert!(parse_object(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        for deep in [arrays, objects] {
            let object = format!(r#"{{"alg":"RS256","x":{deep}}}"#);
            assert!(matches!(
                parse_object(object.as_bytes(), "x"),
                Err(JoseError::Malformed(_))
            ));
        }
    }
}
