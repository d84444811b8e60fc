//! Local `$ref` rewriting: JSON pointers into `#/components/…` and
//! `#/paths/…` follow renamed components and mounted paths.

use std::collections::HashMap;

use serde_json::Value;

use super::OpenApiError;

/// Component sections of an OpenAPI 3 document.
pub const SECTIONS: &[&str] = &[
    "schemas",
    "responses",
    "parameters",
    "examples",
    "requestBodies",
    "headers",
    "securitySchemes",
    "links",
    "callbacks",
    "pathItems",
];

/// How one backend's names change in the merged document.
#[derive(Debug, Default)]
pub struct Renames {
    /// section → old name → new name (only names that change).
    pub components: HashMap<String, HashMap<String, String>>,
    /// Old operationId → new one (only those that change).
    pub operation_ids: HashMap<String, String>,
    /// Prefix added to every path (`/builds`, or empty).
    pub mount: String,
}

/// `~1` → `/`, `~0` → `~` (RFC 6901).
pub fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// `~` → `~0`, `/` → `~1` (RFC 6901).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Renames {
    /// A component's name in the merged document.
    pub fn component<'a>(&'a self, section: &str, name: &'a str) -> &'a str {
        self.components
            .get(section)
            .and_then(|m| m.get(name))
            .map_or(name, String::as_str)
    }

    /// Rewrites one `$ref`. Only local references can be followed.
    pub fn rewrite_ref(&self, reference: &str) -> Result<String, OpenApiError> {
        let Some(pointer) = reference.strip_prefix("#/") else {
            return Err(OpenApiError::ExternalRef(reference.to_string()));
        };
        let mut tokens = pointer.splitn(3, '/');
        let first = tokens.next().unwrap_or_default();
        let second = tokens.next();
        let rest = tokens.next();
        let tail = rest.map(|r| format!("/{r}")).unwrap_or_default();
        Ok(match (first, second) {
            ("components", Some(section)) => {
                // `#/components/<section>/<name>[/…]`: the name is the next token.
                let mut parts = rest.unwrap_or_default().splitn(2, '/');
                let name = parts.next().unwrap_or_default();
                let after = parts.next().map(|r| format!("/{r}")).unwrap_or_default();
                let renamed = self.component(section, &unescape(name)).to_string();
                format!("#/components/{section}/{}{after}", escape(&renamed))
            }
            ("paths", Some(path)) => {
                let mounted = format!("{}{}", self.mount, unescape(path));
                format!("#/paths/{}{tail}", escape(&mounted))
            }
            _ => reference.to_string(),
        })
    }

    /// Rewrites every `$ref`, `operationId`, `operationRef` and
    /// discriminator mapping in `value`, in place.
    pub fn rewrite(&self, value: &mut Value) -> Result<(), OpenApiError> {
        self.walk(value, 0, false)
    }

    fn walk(&self, value: &mut Value, depth: usize, names: bool) -> Result<(), OpenApiError> {
        if depth > super::MAX_DEPTH {
            return Err(OpenApiError::TooDeep);
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    self.walk(item, depth + 1, false)?;
                }
            }
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if names {
                        self.walk(child, depth + 1, false)?;
                        continue;
                    }
                    match (key.as_str(), &mut *child) {
                        ("$ref" | "operationRef", Value::String(r)) => *r = self.rewrite_ref(r)?,
                        ("operationId", Value::String(id)) => {
                            if let Some(new) = self.operation_ids.get(id.as_str()) {
                                *id = new.clone();
                            }
                        }
                        ("discriminator", Value::Object(d)) => {
                            if let Some(Value::Object(mapping)) = d.get_mut("mapping") {
                                for target in mapping.values_mut() {
                                    if let Value::String(t) = target {
                                        *t = if t.starts_with('#') {
                                            self.rewrite_ref(t)?
                                        } else {
                                            self.component("schemas", t).to_string()
                                        };
                                    }
                                }
                            }
                        }
                        (k, _) if super::is_data(k, names) => {}
                        (k, _) => self.walk(child, depth + 1, super::holds_names(k))?,
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn renames() -> Renames {
        let mut r = Renames {
            mount: "/builds".into(),
            ..Renames::default()
        };
        r.components.insert(
            "schemas".into(),
            HashMap::from([
                ("Error".into(), "builds_Error".into()),
                ("a/b".into(), "builds_a/b".into()),
            ]),
        );
        r.operation_ids.insert("list".into(), "builds_list".into());
        r
    }

    #[test]
    fn refs_follow_renames_and_mounts() {
        let r = renames();
        let cases = [
            (
                "#/components/schemas/Error",
                "#/components/schemas/builds_Error",
            ),
            (
                "#/components/schemas/Error/properties/x",
                "#/components/schemas/builds_Error/properties/x",
            ),
            (
                "#/components/schemas/a~1b",
                "#/components/schemas/builds_a~1b",
            ),
            ("#/components/schemas/Other", "#/components/schemas/Other"),
            (
                "#/components/responses/Error",
                "#/components/responses/Error",
            ),
            ("#/paths/~1v1~1build/get", "#/paths/~1builds~1v1~1build/get"),
            ("#/info", "#/info"),
        ];
        for (from, to) in cases {
            assert_eq!(r.rewrite_ref(from).expect(from), to);
        }
        for external in ["other.yaml#/x", "https://example.org/s.json", ""] {
            assert!(matches!(
                r.rewrite_ref(external),
                Err(OpenApiError::ExternalRef(_))
            ));
        }
    }

    #[test]
    fn rewrite_walks_everything_but_data() {
        let r = renames();
        let mut doc = json!({
            "get": {"operationId": "list", "responses": {"200": {"content": {"application/json": {
                "schema": {"oneOf": [{"$ref": "#/components/schemas/Error"}],
                           "discriminator": {"propertyName": "t", "mapping": {
                               "e": "#/components/schemas/Error", "f": "Error", "g": "Other"}}},
                "example": {"$ref": "#/components/schemas/Error"}}}}}},
            "links": {"l": {"operationId": "list", "operationRef": "#/paths/~1x/get"}}
        });
        r.rewrite(&mut doc).expect("rewrites");
        let schema = &doc["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(
            schema["oneOf"][0]["$ref"],
            "#/components/schemas/builds_Error"
        );
        assert_eq!(
            schema["discriminator"]["mapping"]["e"],
            "#/components/schemas/builds_Error"
        );
        assert_eq!(schema["discriminator"]["mapping"]["f"], "builds_Error");
        assert_eq!(schema["discriminator"]["mapping"]["g"], "Other");
        assert_eq!(doc["get"]["operationId"], "builds_list");
        assert_eq!(doc["links"]["l"]["operationId"], "builds_list");
        assert_eq!(doc["links"]["l"]["operationRef"], "#/paths/~1builds~1x/get");
        // Example payloads are data.
        let example = &doc["get"]["responses"]["200"]["content"]["application/json"]["example"];
        assert_eq!(example["$ref"], "#/components/schemas/Error");
    }
}
