//! An index over the rules, so that a check only looks at rules that can
//! possibly match instead of scanning them all.
//!
//! Rules are bucketed by host (exact host, wildcard domain, or any host)
//! and, within a host bucket, by the first path segment they require (or
//! "any path"). A request's candidates are the few buckets its host and
//! first segment select; each bucket lists rule numbers in ascending order,
//! so the first-match order of the configuration is kept by taking the
//! smallest rule number that matches across all candidate buckets. The
//! index only narrows the search: every candidate is still checked in full.

use std::borrow::Cow;
use std::collections::HashMap;

use super::host::HostPattern;
use super::matcher::{RuleMatcher, first_segment};

/// Rule numbers bucketed by host, then by first path segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuleIndex {
    /// Rules naming this exact host.
    exact_hosts: HashMap<Box<str>, PathBuckets>,
    /// Rules naming `*.` + this domain.
    wildcard_domains: HashMap<Box<str>, PathBuckets>,
    /// Rules with no host condition.
    any_host: PathBuckets,
}

/// Rule numbers of one host bucket, by first path segment.
#[derive(Debug, Clone, Default)]
struct PathBuckets {
    /// Rules whose matching paths all start with `/` + this segment.
    by_segment: HashMap<Box<str>, Vec<usize>>,
    /// Rules that may match any first segment.
    any_path: Vec<usize>,
}

impl PathBuckets {
    fn insert(&mut self, segment: Option<&str>, rule: usize) {
        let list = match segment {
            Some(s) => self.by_segment.entry(s.into()).or_default(),
            None => &mut self.any_path,
        };
        // Rules are inserted in order, so a repeat can only be the last.
        if list.last() != Some(&rule) {
            list.push(rule);
        }
    }

    /// The (at most two) ascending lists a path with `segment` selects.
    fn lists<'a>(&'a self, segment: &str) -> impl Iterator<Item = &'a [usize]> {
        self.by_segment
            .get(segment)
            .map(Vec::as_slice)
            .into_iter()
            .chain(std::iter::once(self.any_path.as_slice()))
    }
}

impl RuleIndex {
    /// Indexes `rules`; rule numbers are their positions, from 0.
    pub(crate) fn build<'a>(rules: impl IntoIterator<Item = &'a RuleMatcher>) -> Self {
        let mut index = RuleIndex::default();
        for (number, rule) in rules.into_iter().enumerate() {
            let segment = rule.path.as_ref().and_then(|p| p.first_segment());
            if rule.hosts.is_empty() {
                index.any_host.insert(segment, number);
            }
            for host in &rule.hosts {
                let buckets = match host {
                    HostPattern::Exact(h) => index.exact_hosts.entry(h.clone()),
                    HostPattern::Wildcard(d) => index.wildcard_domains.entry(d.clone()),
                };
                buckets.or_default().insert(segment, number);
            }
        }
        index
    }

    /// The smallest rule number among the candidates for `host` and `path`
    /// for which `is_match` holds. `is_match` is called only on
    /// candidates, and never on a number larger than a match already found.
    pub(crate) fn first_match(
        &self,
        host: &str,
        path: &str,
        mut is_match: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        // Requests carry lower-case hosts; be safe if one does not.
        let host: Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        let segment = first_segment(path);

        let mut best: Option<usize> = None;
        let mut search = |buckets: &PathBuckets| {
            for list in buckets.lists(segment) {
                for &number in list {
                    if best.is_some_and(|b| number >= b) {
                        break;
                    }
                    if is_match(number) {
                        best = Some(number);
                        break;
                    }
                }
            }
        };

        if let Some(buckets) = self.exact_hosts.get(&*host) {
            search(buckets);
        }
        // `a.b.example.com` may match `*.b.example.com`, `*.example.com`
        // and `*.com`.
        let mut rest: &str = &host;
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(buckets) = self.wildcard_domains.get(parent) {
                search(buckets);
            }
            rest = parent;
        }
        search(&self.any_host);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MatchConfig, PathMatchConfig};
    use crate::model::request::Request;
    use proptest::prelude::*;

    fn rule(hosts: &[&str], path: Option<PathMatchConfig>) -> RuleMatcher {
        let cfg = MatchConfig {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            path,
            methods: Vec::new(),
        };
        RuleMatcher::compile(&cfg, "k").expect("valid rule")
    }

    fn request(host: &str, path: &str) -> Request {
        Request {
            method: "GET".into(),
            host: host.into(),
            path: path.into(),
            ..Request::default()
        }
    }

    /// The index's answer, checking every candidate in full.
    fn indexed(rules: &[RuleMatcher], index: &RuleIndex, req: &Request) -> Option<usize> {
        index.first_match(&req.host, &req.path, |i| rules[i].matches(req))
    }

    /// The reference: scan every rule in order.
    fn linear(rules: &[RuleMatcher], req: &Request) -> Option<usize> {
        rules.iter().position(|r| r.matches(req))
    }

    fn prefix(p: &str) -> Option<PathMatchConfig> {
        Some(PathMatchConfig::Prefix(p.into()))
    }

    #[test]
    fn earlier_rule_in_another_bucket_wins() {
        let rules = vec![
            rule(&[], prefix("/")),                   // any host, any path
            rule(&["a.example.com"], prefix("/api")), // exact host, segment
            rule(&["*.example.com"], None),           // wildcard, any path
        ];
        let index = RuleIndex::build(&rules);
        for (host, path) in [
            ("a.example.com", "/api/x"),
            ("b.example.com", "/"),
            ("z", "/q"),
        ] {
            assert_eq!(indexed(&rules, &index, &request(host, path)), Some(0));
        }
    }

    #[test]
    fn order_is_kept_across_host_and_segment_buckets() {
        let rules = vec![
            rule(&["*.example.com"], prefix("/api/")), // 0: wildcard, "api"
            rule(&["a.example.com"], None),            // 1: exact, any path
            rule(&[], prefix("/api")),                 // 2: any host, "api"
            rule(&["a.example.com"], prefix("/api")),  // 3: exact, "api" (shadowed)
            rule(&[], Some(PathMatchConfig::Glob("/**".into()))), // 4: catch-all
        ];
        let index = RuleIndex::build(&rules);
        let cases = [
            ("a.example.com", "/api/x", Some(0)),
            ("a.example.com", "/api", Some(1)),
            ("a.example.com", "/other", Some(1)),
            ("b.example.com", "/api", Some(2)),
            ("b.example.com", "/api/x", Some(0)),
            ("example.com", "/api/x", Some(2)),
            ("example.com", "/x", Some(4)),
            ("x.y", "/", Some(4)),
        ];
        for (host, path, want) in cases {
            let req = request(host, path);
            assert_eq!(indexed(&rules, &index, &req), want, "{host}{path}");
            assert_eq!(linear(&rules, &req), want, "{host}{path}");
        }
    }

    #[test]
    fn only_candidates_are_checked() {
        let rules = vec![
            rule(&["a.com"], prefix("/x")),
            rule(&["b.com"], prefix("/x")),
            rule(&[], prefix("/y")),
            rule(&[], prefix("/x")),
        ];
        let index = RuleIndex::build(&rules);
        let mut checked = Vec::new();
        let req = request("b.com", "/x/1");
        let found = index.first_match(&req.host, &req.path, |i| {
            checked.push(i);
            rules[i].matches(&req)
        });
        assert_eq!(found, Some(1));
        assert_eq!(checked, vec![1]);
    }

    #[test]
    fn upper_case_hosts_still_find_their_bucket() {
        let rules = vec![
            rule(&["a.example.com"], None),
            rule(&["*.example.com"], None),
        ];
        let index = RuleIndex::build(&rules);
        assert_eq!(
            indexed(&rules, &index, &request("A.Example.COM", "/")),
            Some(0)
        );
        assert_eq!(
            indexed(&rules, &index, &request("B.EXAMPLE.com", "/")),
            Some(1)
        );
    }

    #[test]
    fn a_rule_with_several_hosts_is_found_through_each() {
        let rules = vec![rule(&["a.com", "*.b.com", "a.com"], prefix("/p"))];
        let index = RuleIndex::build(&rules);
        assert_eq!(indexed(&rules, &index, &request("a.com", "/p")), Some(0));
        assert_eq!(
            indexed(&rules, &index, &request("x.b.com", "/p/q")),
            Some(0)
        );
        assert_eq!(indexed(&rules, &index, &request("b.com", "/p")), None);
    }

    fn arb_rule() -> impl Strategy<Value = (Vec<String>, Option<PathMatchConfig>)> {
        let host = prop_oneof![
            Just("a.x".to_string()),
            Just("b.a.x".to_string()),
            Just("*.x".to_string()),
            Just("*.a.x".to_string()),
            Just("y".to_string()),
        ];
        let path = prop_oneof![
            Just(None),
            Just(Some(PathMatchConfig::Prefix("/".into()))),
            Just(Some(PathMatchConfig::Prefix("/p".into()))),
            Just(Some(PathMatchConfig::Prefix("/p/".into()))),
            Just(Some(PathMatchConfig::Prefix("/q/r".into()))),
            Just(Some(PathMatchConfig::Exact("/".into()))),
            Just(Some(PathMatchConfig::Exact("/p".into()))),
            Just(Some(PathMatchConfig::Glob("/p/*".into()))),
            Just(Some(PathMatchConfig::Glob("/**/r".into()))),
            Just(Some(PathMatchConfig::Glob("/{p,q}/**".into()))),
        ];
        (prop::collection::vec(host, 0..3), path)
    }

    proptest! {
        #[test]
        fn index_agrees_with_a_linear_scan(
            specs in prop::collection::vec(arb_rule(), 0..12),
            host in prop::sample::select(vec!["a.x", "b.a.x", "c.b.a.x", "x", "y", "z.y", "q"]),
            path in prop::sample::select(vec!["/", "/p", "/p/", "/p/r", "/q", "/q/r", "/q/r/s", "/pq"]),
        ) {
            let rules: Vec<RuleMatcher> = specs
                .iter()
                .map(|(hosts, path)| {
                    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
                    rule(&hosts, path.clone())
                })
                .collect();
            let index = RuleIndex::build(&rules);
            let req = request(host, path);
            prop_assert_eq!(indexed(&rules, &index, &req), linear(&rules, &req));
        }
    }
}
