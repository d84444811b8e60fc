//! OpenAPI 3.0 schemas rewritten as 3.1 (JSON Schema 2020-12) schemas, so
//! 3.0 and 3.1 backends merge into one 3.1 document: `nullable` becomes a
//! `"null"` type, boolean `exclusiveMinimum`/`exclusiveMaximum` become
//! numbers.

use serde_json::{Map, Value, json};

use super::OpenApiError;

/// Rewrites every schema object in `value` in place.
pub fn upgrade(value: &mut Value) -> Result<(), OpenApiError> {
    walk(value, 0, false)
}

fn walk(value: &mut Value, depth: usize, names: bool) -> Result<(), OpenApiError> {
    if depth > super::MAX_DEPTH {
        return Err(OpenApiError::TooDeep);
    }
    match value {
        Value::Array(items) => {
            for item in items {
                walk(item, depth + 1, false)?;
            }
        }
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if names {
                    walk(child, depth + 1, false)?;
                } else if !super::is_data(key, false) {
                    walk(child, depth + 1, super::holds_names(key))?;
                }
            }
            if names {
                return Ok(());
            }
            bounds(map, "exclusiveMinimum", "minimum");
            bounds(map, "exclusiveMaximum", "maximum");
            if let Some(Value::Bool(nullable)) = map.get("nullable").cloned() {
                map.remove("nullable");
                if nullable {
                    *value = nullable_schema(std::mem::take(map));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `exclusiveMinimum: true, minimum: 5` → `exclusiveMinimum: 5`.
fn bounds(map: &mut Map<String, Value>, exclusive: &str, inclusive: &str) {
    match map.get(exclusive) {
        Some(Value::Bool(true)) => {
            match map.remove(inclusive) {
                Some(limit) => map.insert(exclusive.into(), limit),
                None => map.remove(exclusive),
            };
        }
        Some(Value::Bool(false)) => {
            map.remove(exclusive);
        }
        _ => {}
    }
}

/// A schema that also admits `null`.
fn nullable_schema(mut map: Map<String, Value>) -> Value {
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    match map.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            map.insert("type".into(), json!([t, "null"]));
            Value::Object(map)
        }
        Some(Value::Array(types)) => {
            if !types.contains(&json!("null")) {
                types.push(json!("null"));
            }
            Value::Object(map)
        }
        _ => json!({"anyOf": [Value::Object(map), {"type": "null"}]}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nullable_and_bounds() {
        let mut doc = json!({"schemas": {
            "A": {"type": "string", "nullable": true, "enum": ["x"]},
            "B": {"allOf": [{"$ref": "#/components/schemas/A"}], "nullable": true},
            "C": {"type": "integer", "minimum": 1, "exclusiveMinimum": true,
                  "maximum": 9, "exclusiveMaximum": false, "nullable": false},
            "D": {"type": "object", "properties": {"nullable": {"type": "boolean"}},
                  "example": {"nullable": true}}
        }});
        upgrade(&mut doc).expect("upgrades");
        let s = &doc["schemas"];
        assert_eq!(
            s["A"],
            json!({"type": ["string", "null"], "enum": ["x", null]})
        );
        assert_eq!(
            s["B"],
            json!({"anyOf": [{"allOf": [{"$ref": "#/components/schemas/A"}]}, {"type": "null"}]})
        );
        assert_eq!(
            s["C"],
            json!({"type": "integer", "exclusiveMinimum": 1, "maximum": 9})
        );
        // A property named `nullable` and example data are left alone.
        assert_eq!(s["D"]["properties"]["nullable"], json!({"type": "boolean"}));
        assert_eq!(s["D"]["example"], json!({"nullable": true}));
    }
}
