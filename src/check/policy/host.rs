//! Host patterns: exact hosts and `*.domain` wildcards, lower case.

use crate::config::ConfigError;

/// A host pattern, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// This host exactly.
    Exact(Box<str>),
    /// `*.example.com`: any host with at least one label before
    /// `.example.com`. Holds the domain without the `*.`.
    Wildcard(Box<str>),
}

impl HostPattern {
    /// Parses and lower-cases a pattern; `*` may only appear as a whole
    /// leading `*.` label.
    pub(crate) fn parse(raw: &str, key: &str) -> Result<Self, ConfigError> {
        let lower = raw.to_ascii_lowercase();
        let (wildcard, domain) = match lower.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, lower.as_str()),
        };
        if domain.contains('*') {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "invalid host pattern `{raw}`: `*` is only allowed as a leading `*.` label"
                ),
            ));
        }
        if !wildcard && is_ip_literal(domain) {
            return Ok(HostPattern::Exact(domain.into()));
        }
        if let Err(why) = check_hostname(domain) {
            return Err(ConfigError::invalid(
                key,
                format!("invalid host pattern `{raw}`: {why}"),
            ));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(domain.into())
        } else {
            HostPattern::Exact(domain.into())
        })
    }

    /// Whether `host` (lower case, without port) matches.
    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => exact.eq_ignore_ascii_case(host),
            HostPattern::Wildcard(domain) => {
                // `labels` + `.` + domain, with non-empty labels.
                let Some(dot) = host.len().checked_sub(domain.len() + 1) else {
                    return false;
                };
                match (host.get(..dot), host.get(dot..)) {
                    (Some(labels), Some(rest)) => {
                        !labels.is_empty()
                            && !labels.ends_with('.')
                            && rest
                                .strip_prefix('.')
                                .is_some_and(|d| d.eq_ignore_ascii_case(domain))
                    }
                    _ => false,
                }
            }
        }
    }
}

/// `10.0.0.1` or `[::1]`, as the host appears in a request.
fn is_ip_literal(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>().is_ok()
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Dot-separated, non-empty labels of letters, digits, `-` and `_`.
fn check_hostname(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty host");
    }
    if host.contains(':') {
        return Err("hosts are matched without a port");
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("labels hold only letters, digits, `-` and `_`");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(p: &str) -> HostPattern {
        HostPattern::parse(p, "k").expect("valid host pattern")
    }

    #[test]
    fn exact_hosts_are_lower_cased_and_case_insensitive() {
        let h = host("API.Example.com");
        assert_eq!(h, HostPattern::Exact("api.example.com".into()));
        assert!(h.matches("api.example.com"));
        assert!(h.matches("Api.Example.Com"));
        assert!(!h.matches("example.com"));
        assert!(!h.matches("x.api.example.com"));
    }

    #[test]
    fn wildcard_hosts_need_one_more_label() {
        let h = host("*.Example.com");
        assert_eq!(h, HostPattern::Wildcard("example.com".into()));
        assert!(h.matches("a.example.com"));
        assert!(h.matches("a.b.example.com"));
        assert!(h.matches("A.EXAMPLE.COM"));
        assert!(!h.matches("example.com"));
        assert!(!h.matches(".example.com"));
        assert!(!h.matches("a..example.com"));
        assert!(!h.matches("aexample.com"));
        assert!(!h.matches("a.example.com.evil"));
        assert!(!h.matches("a.example.org"));
        assert!(!h.matches(""));
        assert!(!h.matches("é.example.com.x"));
        assert!(h.matches("é.example.com"));
    }

    #[test]
    fn ip_literals_are_exact_hosts() {
        assert!(host("10.0.0.1").matches("10.0.0.1"));
        assert!(host("[::1]").matches("[::1]"));
    }

    #[test]
    fn bad_host_patterns_are_refused() {
        for bad in [
            "",
            "*",
            "*.",
            "a.*.com",
            "*a.com",
            "a*.com",
            "**.a.com",
            "*.*.a.com",
            "a..b",
            ".a.com",
            "a.com.",
            "a.com:80",
            "a b.com",
            "a/b",
            "[::1",
            "[zz]",
        ] {
            let err = HostPattern::parse(bad, "policy.rules[0].match.hosts[0]")
                .expect_err(bad)
                .to_string();
            assert!(err.contains("policy.rules[0].match.hosts[0]"), "{err}");
        }
    }
}
