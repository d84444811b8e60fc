//! Header names taken from configuration (identity headers, the act-as
//! header): validated once at load, kept in lower case.

use super::ConfigError;

/// Headers a configuration may not take over: hop-by-hop, framing,
/// routing and credential headers.
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "cookie",
    "host",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Validates a configured header name and returns it in lower case.
pub fn header_name(raw: &str, key: &str) -> Result<String, ConfigError> {
    // `http` validates the token characters (RFC 9110 §5.1) and lowers
    // the case.
    let Ok(name) = http::HeaderName::from_bytes(raw.as_bytes()) else {
        return Err(ConfigError::invalid(
            key,
            format!("{raw:?} is not an HTTP header name"),
        ));
    };
    let lower = name.as_str().to_string();
    if RESERVED.contains(&lower.as_str()) {
        return Err(ConfigError::invalid(
            key,
            format!("{raw} cannot carry an identity"),
        ));
    }
    Ok(lower)
}
