//! YAML documents read as JSON values (OpenAPI documents are often YAML).

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

use super::OpenApiError;

/// Parses the first YAML document in `text`.
pub fn parse(text: &str) -> Result<Value, OpenApiError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| OpenApiError::Parse(e.to_string()))?;
    let first = docs
        .into_iter()
        .next()
        .ok_or_else(|| OpenApiError::Parse("empty YAML document".into()))?;
    convert(first, 0)
}

fn convert(yaml: Yaml, depth: usize) -> Result<Value, OpenApiError> {
    if depth > super::MAX_DEPTH {
        return Err(OpenApiError::TooDeep);
    }
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| OpenApiError::Parse(format!("number {r} has no JSON form")))?,
        Yaml::String(s) => Value::String(s),
        Yaml::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| convert(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return Err(OpenApiError::Parse("unsupported YAML map key".into())),
                };
                map.insert(key, convert(v, depth + 1)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(OpenApiError::Parse("unsupported YAML value".into()));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_openapi_shaped_yaml() {
        let doc = parse(
            "openapi: 3.0.3\npaths:\n  /x:\n    get:\n      responses:\n        200:\n          description: ok\n        default: {description: err}\nn: 1.5\nb: true\nz: ~\n",
        )
        .expect("parses");
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(
            doc["paths"]["/x"]["get"]["responses"]["200"]["description"],
            "ok"
        );
        assert_eq!(doc["n"], json!(1.5));
        assert_eq!(doc["b"], json!(true));
        assert_eq!(doc["z"], Value::Null);
        assert!(parse("a: [").is_err());
        assert!(parse("").is_err());
    }
}
