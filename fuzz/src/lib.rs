//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use serde_json::{Map, Value};

/// JSON equality, with floats equal to within one unit in the last place or
/// so: `serde_json` (without its `float_roundtrip` feature, which tokensmith
/// does not enable) may read the text it wrote for an f64 one ulp away, so an
/// exact round trip of floats is not a property of the library to check.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => same_map(x, y),
        _ => a == b,
    }
}

/// [`same_json`] for objects: the same names, each with the same value.
pub fn same_map(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_json(v, w)))
}
