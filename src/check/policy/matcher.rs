//! One rule's conditions — hosts, path, methods — compiled once and
//! checked against a request without allocating.

use globset::{GlobBuilder, GlobMatcher};

use super::host::HostPattern;
use super::template::PathTemplate;
use crate::config::{ConfigError, MatchConfig, PathMatchConfig};
use crate::model::path;
use crate::model::request::Request;

/// A compiled `match` block: every present condition must hold.
#[derive(Debug, Clone)]
pub(crate) struct RuleMatcher {
    /// Empty: any host.
    pub(crate) hosts: Box<[HostPattern]>,
    /// `None`: any path.
    pub(crate) path: Option<PathMatcher>,
    /// Upper-case method tokens; empty: any method.
    methods: Box<[Box<str>]>,
}

impl RuleMatcher {
    /// Validates and compiles `config`; `key` is the dotted key of the
    /// `match` block, used to name the offending entry in errors.
    pub(crate) fn compile(config: &MatchConfig, key: &str) -> Result<Self, ConfigError> {
        let hosts = config
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| HostPattern::parse(h, &format!("{key}.hosts[{i}]")))
            .collect::<Result<_, _>>()?;
        let path = config
            .path
            .as_ref()
            .map(|p| PathMatcher::compile(p, &format!("{key}.path")))
            .transpose()?;
        let methods = config
            .methods
            .iter()
            .enumerate()
            .map(|(i, m)| parse_method(m, &format!("{key}.methods[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(RuleMatcher {
            hosts,
            path,
            methods,
        })
    }

    /// Whether `request` satisfies every condition.
    pub(crate) fn matches(&self, request: &Request) -> bool {
        self.method_matches(&request.method)
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(&request.host)))
            && self.path.as_ref().is_none_or(|p| p.matches(&request.path))
    }

    /// `HEAD` is a `GET` without a body, so a rule listing `GET` covers it.
    fn method_matches(&self, method: &str) -> bool {
        self.methods.is_empty()
            || self.methods.iter().any(|m| {
                m.eq_ignore_ascii_case(method)
                    || (&**m == "GET" && method.eq_ignore_ascii_case("HEAD"))
            })
    }
}

/// A path condition on the normalized path.
#[derive(Debug, Clone)]
pub(crate) enum PathMatcher {
    /// The whole path.
    Exact(Box<str>),
    /// A segment-boundary prefix (see [`PathMatcher::matches`]).
    Prefix(Box<str>),
    /// A glob; `first_segment` is its literal first segment, if it has one.
    Glob {
        /// The compiled glob.
        matcher: GlobMatcher,
        /// Every path the glob matches starts with `/` + this + (`/` or end).
        first_segment: Option<Box<str>>,
    },
    /// A template with named segments (`/jobs/v1/tool/{tool}/**`).
    Template(PathTemplate),
}

impl PathMatcher {
    /// Validates and compiles a path condition; `key` names it in errors.
    pub(crate) fn compile(config: &PathMatchConfig, key: &str) -> Result<Self, ConfigError> {
        match config {
            PathMatchConfig::Exact(p) => Ok(PathMatcher::Exact(normalized(p, key)?.into())),
            PathMatchConfig::Prefix(p) => Ok(PathMatcher::Prefix(normalized(p, key)?.into())),
            PathMatchConfig::Glob(g) => {
                let Some(after_root) = g.strip_prefix('/') else {
                    return Err(ConfigError::invalid(
                        key,
                        format!("glob `{g}` must start with '/'"),
                    ));
                };
                let matcher = GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| ConfigError::invalid(key, format!("invalid glob: {e}")))?
                    .compile_matcher();
                let first = after_root.split('/').next().unwrap_or_default();
                let literal = !first.contains(['*', '?', '[', ']', '{', '}', '\\']);
                Ok(PathMatcher::Glob {
                    matcher,
                    first_segment: literal.then(|| first.into()),
                })
            }
            PathMatchConfig::Template(t) => {
                Ok(PathMatcher::Template(PathTemplate::compile(t, key)?))
            }
        }
    }

    /// Whether the normalized `path` matches.
    ///
    /// A prefix matches at a segment boundary: `/api/` matches `/api/x`
    /// (plain string prefix, so not `/api`), and `/api` matches `/api` and
    /// `/api/x` but never `/apix`.
    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Exact(exact) => **exact == *path,
            PathMatcher::Prefix(prefix) => match path.strip_prefix(&**prefix) {
                None => false,
                Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            },
            PathMatcher::Glob { matcher, .. } => matcher.is_match(path),
            PathMatcher::Template(t) => t.matches(path),
        }
    }

    /// The first path segment every matching path has, for the index;
    /// `None` when matching paths may start with any segment.
    pub(crate) fn first_segment(&self) -> Option<&str> {
        match self {
            PathMatcher::Exact(p) => Some(first_segment(p)),
            // `/` is a prefix of every path; any other prefix holds a whole
            // first segment, thanks to the segment-boundary rule.
            PathMatcher::Prefix(p) if &**p == "/" => None,
            PathMatcher::Prefix(p) => Some(first_segment(p)),
            PathMatcher::Glob { first_segment, .. } => first_segment.as_deref(),
            PathMatcher::Template(t) => t.first_segment(),
        }
    }
}

/// `/api/v1` → `api`; `/` → ``.
pub(crate) fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split('/').next().unwrap_or_default()
}

/// An exact or prefix path must already be in normalized form, or it
/// could never match: say which form to write.
fn normalized<'a>(p: &'a str, key: &str) -> Result<&'a str, ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::invalid(
            key,
            format!("path `{p}` must start with '/'"),
        ));
    }
    match path::normalize(p) {
        Ok(n) if n == p => Ok(p),
        Ok(n) => Err(ConfigError::invalid(
            key,
            format!("path `{p}` is not normalized; requests are matched as `{n}`, write that"),
        )),
        Err(e) => Err(ConfigError::invalid(
            key,
            format!("invalid path `{p}`: {e}"),
        )),
    }
}

/// An HTTP method token (RFC 9110 `tchar`s), upper-cased.
fn parse_method(raw: &str, key: &str) -> Result<Box<str>, ConfigError> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if raw.is_empty() || !raw.bytes().all(tchar) {
        return Err(ConfigError::invalid(
            key,
            format!("`{raw}` is not an HTTP method token"),
        ));
    }
    Ok(raw.to_ascii_uppercase().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(cfg: PathMatchConfig) -> PathMatcher {
        PathMatcher::compile(&cfg, "k").expect("valid path")
    }

    fn glob(g: &str) -> PathMatcher {
        path(PathMatchConfig::Glob(g.into()))
    }

    fn prefix(p: &str) -> PathMatcher {
        path(PathMatchConfig::Prefix(p.into()))
    }

    #[test]
    fn exact_paths_match_the_whole_path() {
        let p = path(PathMatchConfig::Exact("/whoami".into()));
        assert!(p.matches("/whoami"));
        assert!(!p.matches("/whoami/"));
        assert!(!p.matches("/whoami/x"));
        assert!(!p.matches("/who"));
    }

    #[test]
    fn prefixes_without_slash_match_at_a_segment_boundary() {
        let p = prefix("/api");
        assert!(p.matches("/api"));
        assert!(p.matches("/api/"));
        assert!(p.matches("/api/x/y"));
        assert!(!p.matches("/apix"));
        assert!(!p.matches("/ap"));
        assert!(!p.matches("/x/api"));
    }

    #[test]
    fn prefixes_with_slash_are_string_prefixes() {
        let p = prefix("/api/");
        assert!(p.matches("/api/"));
        assert!(p.matches("/api/x"));
        assert!(!p.matches("/api"));
        assert!(!p.matches("/apix"));
        let root = prefix("/");
        assert!(root.matches("/"));
        assert!(root.matches("/anything/at/all"));
        let deep = prefix("/api/v1");
        assert!(deep.matches("/api/v1/items"));
        assert!(!deep.matches("/api/v10"));
    }

    #[test]
    fn glob_star_stays_within_a_segment() {
        let g = glob("/api/*/items");
        assert!(g.matches("/api/v1/items"));
        assert!(!g.matches("/api/v1/v2/items"));
        assert!(!g.matches("/api/items"));
        let g = glob("/files/*.txt");
        assert!(g.matches("/files/a.txt"));
        assert!(!g.matches("/files/a/b.txt"));
    }

    #[test]
    fn glob_double_star_crosses_segments() {
        let g = glob("/api/**/items");
        assert!(g.matches("/api/items"));
        assert!(g.matches("/api/v1/items"));
        assert!(g.matches("/api/v1/v2/items"));
        let g = glob("/static/**");
        assert!(g.matches("/static/a"));
        assert!(g.matches("/static/a/b/c.css"));
        assert!(!g.matches("/static"));
        assert!(!g.matches("/staticx/a"));
        let g = glob("/**/*.json");
        assert!(g.matches("/a.json"));
        assert!(g.matches("/a/b/c.json"));
    }

    #[test]
    fn glob_first_segments_feed_the_index() {
        assert_eq!(glob("/api/**").first_segment(), Some("api"));
        assert_eq!(glob("/api").first_segment(), Some("api"));
        assert_eq!(glob("/api*/x").first_segment(), None);
        assert_eq!(glob("/{a,b}/x").first_segment(), None);
        assert_eq!(glob("/**").first_segment(), None);
        assert_eq!(glob("/a\\*b/x").first_segment(), None);
        assert_eq!(prefix("/").first_segment(), None);
        assert_eq!(prefix("/api/").first_segment(), Some("api"));
        assert_eq!(prefix("/api").first_segment(), Some("api"));
        assert_eq!(
            path(PathMatchConfig::Exact("/".into())).first_segment(),
            Some("")
        );
    }

    #[test]
    fn bad_paths_are_refused_with_their_key() {
        for bad in [
            PathMatchConfig::Exact("api".into()),
            PathMatchConfig::Exact("".into()),
            PathMatchConfig::Prefix("api/".into()),
            PathMatchConfig::Prefix("/a//b".into()),
            PathMatchConfig::Prefix("/a/../b".into()),
            PathMatchConfig::Exact("/%7euser".into()),
            PathMatchConfig::Exact("/a%2Fb".into()),
            PathMatchConfig::Glob("api/**".into()),
            PathMatchConfig::Glob("/api/[".into()),
            PathMatchConfig::Glob("/{a,b".into()),
        ] {
            let err = PathMatcher::compile(&bad, "policy.rules[3].match.path")
                .expect_err(&format!("{bad:?}"))
                .to_string();
            assert!(err.contains("policy.rules[3].match.path"), "{err}");
        }
        let err = PathMatcher::compile(&PathMatchConfig::Exact("/%7euser".into()), "k")
            .expect_err("not normalized")
            .to_string();
        assert!(err.contains("`/~user`"), "{err}");
    }

    #[test]
    fn methods_are_upper_cased_tokens() {
        assert_eq!(parse_method("get", "k").expect("token").as_ref(), "GET");
        assert_eq!(
            parse_method("M-SEARCH", "k").expect("token").as_ref(),
            "M-SEARCH"
        );
        for bad in ["", "G ET", "GET\n", "(GET)", "GÉT"] {
            assert!(parse_method(bad, "k").is_err(), "{bad:?}");
        }
    }

    fn request(method: &str, host: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            host: host.into(),
            path: path.into(),
            ..Request::default()
        }
    }

    fn rule(hosts: &[&str], path: Option<PathMatchConfig>, methods: &[&str]) -> RuleMatcher {
        let cfg = MatchConfig {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            path,
            methods: methods.iter().map(|s| s.to_string()).collect(),
        };
        RuleMatcher::compile(&cfg, "k").expect("valid match")
    }

    #[test]
    fn head_matches_a_get_rule_but_not_the_reverse() {
        let get = rule(&[], None, &["get"]);
        assert!(get.matches(&request("GET", "h", "/")));
        assert!(get.matches(&request("HEAD", "h", "/")));
        assert!(!get.matches(&request("POST", "h", "/")));
        let head = rule(&[], None, &["HEAD"]);
        assert!(!head.matches(&request("GET", "h", "/")));
    }

    #[test]
    fn all_present_conditions_must_hold() {
        let r = rule(
            &["a.example.com", "*.b.example.com"],
            Some(PathMatchConfig::Prefix("/api".into())),
            &["POST", "put"],
        );
        assert!(r.matches(&request("POST", "a.example.com", "/api/x")));
        assert!(r.matches(&request("PUT", "x.b.example.com", "/api")));
        assert!(!r.matches(&request("GET", "a.example.com", "/api/x")));
        assert!(!r.matches(&request("POST", "b.example.com", "/api/x")));
        assert!(!r.matches(&request("POST", "a.example.com", "/apix")));
        let any = rule(&[], None, &[]);
        assert!(any.matches(&request("DELETE", "whatever", "/x")));
    }
}
