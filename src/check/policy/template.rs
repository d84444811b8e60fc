//! Path templates: `/jobs/v1/tool/{tool}/**`. Literal segments match
//! themselves, `{name}` and `*` match exactly one non-empty segment (a
//! `{name}` segment's value can be read back, e.g. to check tool
//! ownership), and a final `**` matches whatever follows, including
//! nothing.

use crate::config::ConfigError;
use crate::model::path;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Named(Box<str>),
    Any,
}

/// A compiled path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    segments: Box<[Segment]>,
    /// A final `**`.
    rest: bool,
}

impl PathTemplate {
    /// Validates and compiles a template; `key` names it in errors.
    pub(crate) fn compile(template: &str, key: &str) -> Result<Self, ConfigError> {
        let invalid =
            |why: String| ConfigError::invalid(key, format!("template `{template}`: {why}"));
        let Some(after_root) = template.strip_prefix('/') else {
            return Err(invalid("must start with '/'".into()));
        };
        let mut segments = Vec::new();
        let mut rest = false;
        if !after_root.is_empty() {
            let parts: Vec<&str> = after_root.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let segment = match *part {
                    "**" if last => {
                        rest = true;
                        continue;
                    }
                    "**" => return Err(invalid("`**` may only be the last segment".into())),
                    "*" => Segment::Any,
                    p if p.starts_with('{') && p.ends_with('}') && p.len() > 2 => {
                        let name = &p[1..p.len() - 1];
                        let ident = name.chars().enumerate().all(|(j, c)| {
                            c == '_' || c.is_ascii_alphabetic() || (j > 0 && c.is_ascii_digit())
                        });
                        if !ident {
                            return Err(invalid(format!("`{{{name}}}` is not a valid name")));
                        }
                        if segments.contains(&Segment::Named(name.into())) {
                            return Err(invalid(format!("`{{{name}}}` appears twice")));
                        }
                        Segment::Named(name.into())
                    }
                    p if p.contains(['{', '}', '*']) => {
                        return Err(invalid(format!(
                            "segment `{p}`: `{{name}}`, `*` and `**` must be whole segments"
                        )));
                    }
                    p => {
                        let alone = format!("/{p}");
                        if p.is_empty() || path::normalize(&alone).ok().as_deref() != Some(&alone) {
                            return Err(invalid(format!(
                                "segment `{p}` is empty or not in normalized form"
                            )));
                        }
                        Segment::Literal(p.into())
                    }
                };
                segments.push(segment);
            }
        }
        Ok(PathTemplate {
            segments: segments.into(),
            rest,
        })
    }

    /// Whether the normalized `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.walk(path, |_, _| ())
    }

    /// The value of the `{name}` segment in `path`, if the template
    /// matches and has such a segment.
    pub(crate) fn capture<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        let mut found = None;
        let matched = self.walk(path, |segment, value| {
            if let Segment::Named(n) = segment
                && &**n == name
            {
                found = Some(value);
            }
        });
        if matched { found } else { None }
    }

    /// Whether the template has a `{name}` segment.
    pub(crate) fn has_name(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Named(n) if &**n == name))
    }

    /// The literal first segment, for the rule index.
    pub(crate) fn first_segment(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Literal(s)) => Some(s),
            // `/` alone: only the path `/`, whose first segment is empty.
            None if !self.rest => Some(""),
            _ => None,
        }
    }

    fn walk<'p>(&self, path: &'p str, mut each: impl FnMut(&Segment, &'p str)) -> bool {
        let Some(after_root) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = (!after_root.is_empty())
            .then(|| after_root.split('/'))
            .into_iter()
            .flatten();
        for segment in self.segments.iter() {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match segment {
                Segment::Literal(l) => **l == *part,
                Segment::Named(_) | Segment::Any => !part.is_empty(),
            };
            if !ok {
                return false;
            }
            each(segment, part);
        }
        self.rest || parts.next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(template: &str) -> PathTemplate {
        PathTemplate::compile(template, "k").expect("valid template")
    }

    #[test]
    fn named_segments_and_rest() {
        let jobs = t("/jobs/v1/tool/{tool}/**");
        assert!(jobs.matches("/jobs/v1/tool/alpha"));
        assert!(jobs.matches("/jobs/v1/tool/alpha/"));
        assert!(jobs.matches("/jobs/v1/tool/alpha/jobs/x"));
        assert!(!jobs.matches("/jobs/v1/tool"));
        assert!(!jobs.matches("/jobs/v1/tool/"));
        assert!(!jobs.matches("/jobs/v1/tools/alpha"));
        assert!(!jobs.matches("/jobs/v1/tool//x"));
        assert_eq!(
            jobs.capture("/jobs/v1/tool/alpha/jobs", "tool"),
            Some("alpha")
        );
        assert_eq!(jobs.capture("/jobs/v1/tool/alpha/jobs", "other"), None);
        assert_eq!(jobs.capture("/builds/alpha", "tool"), None);
        assert_eq!(jobs.first_segment(), Some("jobs"));
        assert!(jobs.has_name("tool"));
    }

    #[test]
    fn without_rest_the_length_is_exact() {
        let one = t("/tool/{tool}");
        assert!(one.matches("/tool/a"));
        assert!(!one.matches("/tool/a/b"));
        assert!(!one.matches("/tool/a/"));
        let star = t("/*/{id}");
        assert!(star.matches("/x/1"));
        assert_eq!(star.first_segment(), None);
        let root = t("/");
        assert!(root.matches("/"));
        assert!(!root.matches("/x"));
        assert_eq!(root.first_segment(), Some(""));
        let all = t("/**");
        assert!(all.matches("/") && all.matches("/a/b"));
        assert_eq!(all.first_segment(), None);
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "jobs/{tool}",
            "/a/**/b",
            "/{tool}/{tool}",
            "/{1x}",
            "/{}",
            "/a{b}",
            "/a*",
            "/a//b",
            "/a/../b",
            "/%7euser",
            "/{to-ol}",
        ] {
            let err = PathTemplate::compile(bad, "policy.rules[0].match.path")
                .expect_err(bad)
                .to_string();
            assert!(err.contains("policy.rules[0].match.path"), "{err}");
        }
    }
}
