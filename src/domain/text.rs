//! Text that Postgres can store. `text` and `jsonb` refuse one character that Rust
//! strings and JSON allow: NUL (`\u0000`). Text from outside (upstream bodies, a
//! handler's result) passes through here before it is written, so one odd byte
//! cannot make a write fail for ever.

use serde_json::Value;

/// Whether `s` contains a character Postgres text refuses.
pub fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// `s` without NUL characters (unchanged, without copying, when it has none).
pub fn storable(s: String) -> String {
    if has_nul(&s) { s.replace('\0', "") } else { s }
}

/// `value` with NUL removed from every string in it, keys included.
pub fn storable_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(storable(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(storable_json).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(k, v)| (storable(k), storable_json(v))).collect())
        }
        other => other,
    }
}

/// Whether any string in `value`, keys included, contains NUL.
pub fn json_has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => has_nul(s),
        Value::Array(items) => items.iter().any(json_has_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| has_nul(k) || json_has_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_is_removed_from_strings_and_json_strings() {
        assert_eq!(storable("bad\0byte".into()), "badbyte");
        assert_eq!(storable("fine".into()), "fine");
        let raw = json!({"a\u{0}": ["x\u{0}y", 1, null, {"b": "\u{0}"}], "n": 2});
        assert!(json_has_nul(&raw));
        let clean = storable_json(raw);
        assert_eq!(clean, json!({"a": ["xy", 1, null, {"b": ""}], "n": 2}));
        assert!(!json_has_nul(&clean));
    }
}
