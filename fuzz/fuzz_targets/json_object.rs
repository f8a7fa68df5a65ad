//! The strict JSON reader of request bodies, headers and claims
//! (`jose::json::parse_object`, and `parse_object_split` beside it).
//!
//! Input: bytes. Invariants, against `serde_json`'s ordinary reader:
//! - what the strict reader accepts, the ordinary one reads as the same
//!   object (strictness only ever refuses, never reads differently);
//! - what the ordinary reader refuses, or reads as something other than an
//!   object, the strict one refuses;
//! - the split reader agrees with the whole-object reader, slots and rest
//!   together making the same object;
//! - an accepted object, written out, reads back to itself (floats to
//!   within an ulp: see `same_json`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokensmith::fuzzing::{parse_object, parse_object_split};
use tokensmith_fuzz::same_map;

const NAMES: [&str; 4] = ["alg", "exp", "sub", "aud"];

fuzz_target!(|data: &[u8]| {
    let strict = parse_object(data, "the body");
    let ordinary = serde_json::from_slice::<Value>(data);
    let split = parse_object_split(data, "the body", &NAMES);
    assert_eq!(
        strict.is_ok(),
        split.is_ok(),
        "the split reader disagrees with the whole-object reader"
    );
    let Ok(object) = strict else {
        return;
    };
    match ordinary {
        Ok(Value::Object(o)) => assert_eq!(o, object, "the strict reader read another object"),
        other => panic!("the strict reader accepted what serde_json reads as {other:?}"),
    }
    let split = split.expect("checked above");
    let mut joined: Map<String, Value> = split.rest;
    for (name, slot) in NAMES.iter().zip(split.slots) {
        if let Some(v) = slot {
            assert!(
                joined.insert((*name).to_owned(), v).is_none(),
                "a slot member also in the rest"
            );
        }
    }
    assert_eq!(joined, object, "slots and rest are not the object");
    let written = serde_json::to_vec(&object).expect("an object serialises");
    let again = parse_object(&written, "again").expect("a written object reads back");
    assert!(
        same_map(&again, &object),
        "an object changed in a round trip: {again:?}"
    );
});
