//! JSON Schema of the values whose Rust type says less than the file
//! does: durations (humantime strings), CIDRs, JWS algorithm names and the
//! XFCC element choice. The config types name these in
//! `#[schemars(with = …)]`; `ops::config` builds the whole schema.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

/// The duration grammar of the configuration (`humantime`): one or more
/// `<number><unit>` spans, e.g. `30s`, `5m`, `1h 30m`, `2d`, `1.5h`; or a
/// bare `0`.
pub const DURATION_PATTERN: &str = concat!(
    r"^(0|\s*([0-9]+(\.[0-9]+)?\s*",
    "(nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|",
    "minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|",
    "weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)",
    r"\s*)+)$"
);

/// A duration written as text (`humantime`), e.g. `30s` or `1h 30m`.
pub struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "title": "duration",
            "description": "A duration: one or more `<number><unit>` spans, e.g. `30s`, `5m`, `1h 30m`, `2d`, `1.5h`. Units: `ms`, `s`, `m`, `h`, `d`, `w` (and their long forms: `msec`, `sec`, `min`, `hours`, `days`, `weeks`, …; `M` is a month of 30.44 days, `y` a year of 365.25 days).",
            "pattern": DURATION_PATTERN,
            "examples": ["30s", "5m", "1h 30m", "2d"],
        })
    }
}

/// An IP network in CIDR notation, e.g. `10.0.0.0/8` or `fd00::/8`.
pub struct Cidr;

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "title": "CIDR",
            "description": "An IP network in CIDR notation, e.g. `10.0.0.0/8` or `fd00::/8`.",
            "pattern": r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$",
            "examples": ["10.0.0.0/8", "fd00::/8"],
        })
    }
}

/// The JWS algorithm names `jwt.issuers[].algorithms` accepts (those of
/// `jsonwebtoken::Algorithm`; `none` is not one of them).
pub const JWS_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

/// A JWS signature algorithm name.
pub struct JwsAlgorithm;

impl JsonSchema for JwsAlgorithm {
    fn schema_name() -> Cow<'static, str> {
        "Algorithm".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A JWS signature algorithm (`none` is refused; `HS*` need a `shared_secret_file`).",
            "enum": JWS_ALGORITHMS,
        })
    }
}

/// `certificates.xfcc.element`: `last`, `first`, or a position.
pub struct XfccElement;

impl JsonSchema for XfccElement {
    fn schema_name() -> Cow<'static, str> {
        "XfccElement".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "title": "`last` | `first` | position",
            "description": "`last`, `first`, or a position (0 = first, -1 = last).",
            "anyOf": [
                {"type": "integer"},
                {"type": "string", "enum": ["last", "first"]},
                {"type": "string", "pattern": r"^[+-]?[0-9]+$"},
            ],
        })
    }
}

/// An inline JWKS document: `{"keys": [...]}`.
pub struct Jwks;

impl JsonSchema for Jwks {
    fn schema_name() -> Cow<'static, str> {
        "Jwks".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "title": "JWKS document",
            "description": "A JSON Web Key Set (RFC 7517): `{\"keys\": [...]}`.",
            "properties": {
                "keys": {"type": "array", "items": {"type": "object"}, "description": "The keys (JWK objects)."},
            },
            "required": ["keys"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern accepts what the loader accepts, and refuses what it
    /// refuses, on a sample of both.
    #[test]
    fn duration_pattern_agrees_with_humantime() {
        let pattern = regex::Regex::new(DURATION_PATTERN).expect("a valid regex");
        let samples = [
            "30s", "5m", "2d", "1h 30m", "1h30m", "15s", " 1s ", "10 s", "1.5h", "250ms", "1w",
            "2weeks", "3 days", "1M", "1y", "100us", "5µs", "7nanos", "0s", "", "0", " 0", "00",
            "5", "s", "5x", "1.h", "-5s", "5s,", "1h-30m", "soon", "1e3s", ".5s",
        ];
        for sample in samples {
            assert_eq!(
                pattern.is_match(sample),
                humantime::parse_duration(sample).is_ok(),
                "{sample:?}"
            );
        }
    }

    /// Every name the schema lists deserializes into an algorithm, and the
    /// list is complete (pinned against the names the config tests pin).
    #[test]
    fn algorithm_names_deserialize() {
        for name in JWS_ALGORITHMS {
            let alg: jsonwebtoken::Algorithm = serde_json::from_value((*name).into()).expect(name);
            assert_eq!(format!("{alg:?}"), *name);
        }
    }
}
