//! Holding a type against the server's answers, for tests: which fields of an answer a type
//! does not know.

use serde::Serialize;
use serde_json::Value;

/// For tests that hold a type against the server's answers: the JSON object keys in `raw`
/// (recursively, through arrays) that `typed`, serialized again, does not have: fields the
/// server sends that the type does not know. Empty when the type covers the answer.
pub fn unknown_fields<T: Serialize>(typed: &T, raw: &Value) -> Vec<String> {
    let again = serde_json::to_value(typed).unwrap_or(Value::Null);
    let mut out = Vec::new();
    missing(raw, &again, "", &mut out);
    out
}

fn missing(raw: &Value, typed: &Value, at: &str, out: &mut Vec<String>) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, v) in r {
                let here = format!("{at}.{k}");
                match t.get(k) {
                    Some(tv) => missing(v, tv, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (i, v) in r.iter().enumerate() {
                let here = format!("{at}[{i}]");
                match t.get(i) {
                    Some(tv) => missing(v, tv, &here, out),
                    None => out.push(here),
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use suitcase_protocol::GroupInfo;

    use super::*;

    #[test]
    fn unknown_fields_names_what_the_type_lacks() {
        let raw: Value = serde_json::from_str(r#"[{"name":"g","devices":3,"colour":"red"}]"#)
            .unwrap_or_default();
        let typed: Vec<GroupInfo> = serde_json::from_value(raw.clone()).unwrap_or_default();
        assert_eq!(unknown_fields(&typed, &raw), vec!["[0].colour".to_owned()]);
        let fine: Value = serde_json::from_str(r#"[{"name":"g","devices":3}]"#).unwrap_or_default();
        assert!(unknown_fields(&typed, &fine).is_empty());
    }
}
