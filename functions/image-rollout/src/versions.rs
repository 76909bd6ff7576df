//! Pure: how tags are ordered when a rule moves workloads between versions (`bump`), as Keel,
//! Flux image automation and Argo CD Image Updater order them: semver (ranges written the
//! Masterminds way), or the capture of a regular expression, numerically or alphabetically.

use regex::Regex;

/// A range as Flux image automation and Argo CD Image Updater read it: Masterminds/semver v3's
/// constraint language. Cargo's `semver::VersionReq` reads the same text differently (a bare
/// `2.1` is `^2.1` there and `2.1.x` here; no `!=`, no hyphen ranges; pre-releases only within
/// one patch), and no crate implements Masterminds' rules, so they are kept here, on
/// `semver::Version` for the versions themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Alternatives (`||`), each a conjunction of comparators.
    any: Vec<Vec<Comparator>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// No operator or `=`: equal, or within the wildcard (`1.2` is `1.2.x`).
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    /// `~`, `~>`: same major and minor (same major when the minor is a wildcard).
    Tilde,
    /// `^`: same leftmost non-zero part.
    Caret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    /// Wildcards and missing parts read as 0.
    at: semver::Version,
    /// The minor (and so the patch) is a wildcard or missing: `1`, `1.x`.
    minor_any: bool,
    /// The patch is a wildcard or missing: `1.2`, `1.2.x`.
    patch_any: bool,
    /// Any part is a wildcard or missing, the major included (`*`).
    wild: bool,
}

const OPERATORS: [(&str, Op); 12] = [
    // Longest first: `>=` before `>`.
    ("!=", Op::NotEqual),
    (">=", Op::GreaterEqual),
    ("=>", Op::GreaterEqual),
    ("<=", Op::LessEqual),
    ("=<", Op::LessEqual),
    ("~>", Op::Tilde),
    (">", Op::Greater),
    ("<", Op::Less),
    ("=", Op::Equal),
    ("~", Op::Tilde),
    ("^", Op::Caret),
    ("", Op::Equal),
];

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// `major[.minor[.patch]][-pre][+build]`, each number possibly a wildcard (`wild`) or, for a
/// version, only digits.
fn parts(text: &str, wild: bool) -> Option<([Option<u64>; 3], usize, semver::Prerelease)> {
    let text = text.strip_prefix('v').unwrap_or(text);
    let (text, _build) = match text.split_once('+') {
        Some((t, b)) if !b.is_empty() && b.split('.').all(identifier) => (t, Some(b)),
        Some(_) => return None,
        None => (text, None),
    };
    let (core, pre) = match text.split_once('-') {
        Some((c, p)) if !p.is_empty() && p.split('.').all(identifier) => (c, p),
        Some(_) => return None,
        None => (text, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() > 3 {
        return None;
    }
    let mut out = [None; 3];
    for (slot, n) in out.iter_mut().zip(&numbers) {
        *slot = if wild && is_wildcard(n) {
            None
        } else if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            Some(n.parse().ok()?)
        } else {
            return None;
        };
    }
    Some((out, numbers.len(), semver::Prerelease::new(pre).ok()?))
}

fn identifier(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A tag as a version, the way Flux reads tags (Masterminds' `NewVersion`): `1.4.3`, `v1.4.3`,
/// `1.4` (1.4.0), `1.4.3-rc.1`; build metadata is read and ignored.
pub fn version(tag: &str) -> Option<semver::Version> {
    let (n, _, pre) = parts(tag, false)?;
    let mut v = semver::Version::new(n[0]?, n[1].unwrap_or(0), n[2].unwrap_or(0));
    v.pre = pre;
    Some(v)
}

impl Comparator {
    fn parse(op: Op, text: &str) -> Option<Comparator> {
        let (n, count, pre) = parts(text, true)?;
        // A wildcard leaves everything after it a wildcard: `1.x.3` reads as `1.x`.
        let major = n[0];
        let minor = major.and(n[1]).filter(|_| count >= 2);
        let patch = minor.and(n[2]).filter(|_| count >= 3);
        let mut at =
            semver::Version::new(major.unwrap_or(0), minor.unwrap_or(0), patch.unwrap_or(0));
        at.pre = pre;
        Some(Comparator {
            op,
            minor_any: major.is_some() && minor.is_none(),
            patch_any: minor.is_some() && patch.is_none(),
            wild: patch.is_none(),
            at,
        })
    }

    fn matches(&self, v: &semver::Version) -> bool {
        use std::cmp::Ordering::*;
        let c = &self.at;
        // A pre-release matches only a comparator that names one (Masterminds/semver#21).
        if !v.pre.is_empty() && c.pre.is_empty() && (self.op != Op::NotEqual || self.wild) {
            return false;
        }
        let ord = v.cmp_precedence(c);
        match self.op {
            Op::Equal if self.wild => self.tilde(v),
            Op::Equal => ord == Equal,
            Op::NotEqual if self.wild => {
                if v.major != c.major {
                    true
                } else if self.minor_any {
                    false
                } else if v.minor != c.minor {
                    true
                } else if self.patch_any {
                    v.pre != c.pre
                } else {
                    ord != Equal
                }
            }
            Op::NotEqual => ord != Equal,
            Op::Greater if self.wild && v.major == c.major && self.minor_any => false,
            Op::Greater if self.wild && v.major == c.major && self.patch_any => v.minor > c.minor,
            Op::Greater if self.wild && v.major != c.major => v.major > c.major,
            Op::Greater => ord == Greater,
            Op::Less => ord == Less,
            Op::GreaterEqual => ord != Less,
            Op::LessEqual if self.wild => {
                v.major < c.major || (v.major == c.major && (self.minor_any || v.minor <= c.minor))
            }
            Op::LessEqual => ord != Greater,
            Op::Tilde => self.tilde(v),
            Op::Caret => self.caret(v),
        }
    }

    /// `~1.2.3` and `~1.2`: 1.2.x from there; `~1`: 1.x; `~0.0.0` and `~*`: anything.
    fn tilde(&self, v: &semver::Version) -> bool {
        let c = &self.at;
        if v.cmp_precedence(c).is_lt() {
            return false;
        }
        if (c.major, c.minor, c.patch) == (0, 0, 0) && !self.minor_any && !self.patch_any {
            return true;
        }
        v.major == c.major && (self.minor_any || v.minor == c.minor)
    }

    /// `^1.2.3`: 1.x from there; `^0.2.3`: 0.2.x; `^0.0.3`: only 0.0.3; `^0`: 0.x; `^0.0`: 0.0.x.
    fn caret(&self, v: &semver::Version) -> bool {
        let c = &self.at;
        if v.cmp_precedence(c).is_lt() {
            return false;
        }
        if c.major > 0 || self.minor_any {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.patch_any {
            return v.minor == c.minor;
        }
        v.minor == 0 && v.patch == c.patch
    }
}

impl Range {
    /// Comparators separated by spaces or commas (`>=1.4 <2`, `>=1.4, <2`), an operator
    /// possibly apart from its version (`>= 1.4`), hyphen ranges (`1.2 - 1.4.5`), and
    /// alternatives joined by `||`.
    pub fn parse(range: &str) -> Result<Range, String> {
        let bad = |why: &str| format!("semver {range:?}: {why}");
        let any = range
            .split("||")
            .map(|alt| {
                let words: Vec<&str> = alt.split_whitespace().collect();
                let mut all = Vec::new();
                let mut i = 0;
                while i < words.len() {
                    // `A - B` is `>= A, <= B`.
                    if words.get(i + 1) == Some(&"-") && i + 2 < words.len() {
                        let (from, to) = (words[i].trim_end_matches(','), words[i + 2]);
                        all.push(Comparator::parse(Op::GreaterEqual, from));
                        all.push(Comparator::parse(Op::LessEqual, to.trim_end_matches(',')));
                        i += 3;
                        continue;
                    }
                    let mut word = words[i].to_owned();
                    i += 1;
                    let (op, rest) = split_operator(&word);
                    if rest.is_empty() && !op.0.is_empty() {
                        // The operator stands alone: its version is the next word.
                        let next = words
                            .get(i)
                            .ok_or_else(|| bad("an operator without a version"))?;
                        word.push_str(next);
                        i += 1;
                    }
                    let (op, rest) = split_operator(&word);
                    // Commas separate comparators; a comma inside a word does too (`>0,<2.0`).
                    for (k, piece) in rest.split(',').enumerate() {
                        if piece.is_empty() {
                            continue;
                        }
                        let (op, text) = if k == 0 {
                            (op.1, piece)
                        } else {
                            let (o, t) = split_operator(piece);
                            (o.1, t)
                        };
                        all.push(Comparator::parse(op, text));
                    }
                }
                if all.is_empty() {
                    return Err(bad("no comparator"));
                }
                all.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("not a version range"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Range { any })
    }

    /// A tag that reads as a version and satisfies one of the alternatives.
    pub fn matches(&self, tag: &str) -> bool {
        version(tag).is_some_and(|v| self.any.iter().any(|all| all.iter().all(|c| c.matches(&v))))
    }
}

fn split_operator(word: &str) -> ((&'static str, Op), &str) {
    let (text, op) = OPERATORS
        .iter()
        .find(|(text, _)| word.starts_with(text))
        .copied()
        .unwrap_or(("", Op::Equal));
    ((text, op), &word[text.len()..])
}

/// A rule's `pattern`, anchored: it speaks for the whole tag, never a part of it.
pub fn whole_tag(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("pattern {pattern:?}: {e}"))
}

/// The order a rule moves workloads in.
#[derive(Debug, Clone)]
pub enum Order {
    Semver,
    /// The first capture (or the whole tag) as a number: `build-99` < `build-100`.
    Numerical(Regex),
    /// The first capture (or the whole tag) as text: `2026-11-21` < `2026-12-01`.
    Alphabetical(Regex),
}

impl PartialEq for Order {
    fn eq(&self, other: &Order) -> bool {
        match (self, other) {
            (Order::Semver, Order::Semver) => true,
            (Order::Numerical(a), Order::Numerical(b))
            | (Order::Alphabetical(a), Order::Alphabetical(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for Order {}

fn key<'t>(re: &Regex, tag: &'t str) -> Option<&'t str> {
    let c = re.captures(tag)?;
    Some(c.get(1).or_else(|| c.get(0))?.as_str())
}

/// As Flux's numerical policy reads tags (any number, `-3` and `2.5` too), but whole numbers
/// exactly: build numbers and nanosecond timestamps are past what an `f64` tells apart.
fn number_after(p: &str, c: &str) -> bool {
    match (p.parse::<i128>(), c.parse::<i128>()) {
        (Ok(p), Ok(c)) => p > c,
        _ => matches!((p.parse::<f64>(), c.parse::<f64>()), (Ok(p), Ok(c)) if p > c),
    }
}

impl Order {
    /// `tag` has a place in this order.
    pub fn ranks(&self, tag: &str) -> bool {
        match self {
            Order::Semver => version(tag).is_some(),
            Order::Numerical(re) => {
                key(re, tag).is_some_and(|k| k.parse::<i128>().is_ok() || k.parse::<f64>().is_ok())
            }
            Order::Alphabetical(re) => key(re, tag).is_some(),
        }
    }

    /// `pushed` comes after `current`: a move up. Never down, never sideways, never between a
    /// tag of the order and one outside it.
    pub fn newer(&self, pushed: &str, current: &str) -> bool {
        match self {
            Order::Semver => matches!(
                (version(pushed), version(current)),
                (Some(p), Some(c)) if p.cmp_precedence(&c).is_gt()
            ),
            Order::Numerical(re) => match (key(re, pushed), key(re, current)) {
                (Some(p), Some(c)) => number_after(p, c),
                _ => false,
            },
            Order::Alphabetical(re) => {
                matches!((key(re, pushed), key(re, current)), (Some(p), Some(c)) if p > c)
            }
        }
    }
}

/// The highest of `tags` in `order` among those `eligible` admits: what a reconcile catches a
/// workload up to.
pub fn latest<'t>(
    tags: impl IntoIterator<Item = &'t str>,
    eligible: impl Fn(&str) -> bool,
    order: &Order,
) -> Option<&'t str> {
    tags.into_iter()
        .filter(|t| eligible(t) && order.ranks(t))
        .fold(None, |best, t| match best {
            Some(b) if !order.newer(t, b) => Some(b),
            _ => Some(t),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn cases() -> Value {
        serde_json::from_str(include_str!("../testdata/version-cases.json")).unwrap()
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn ranges_match_as_masterminds_semver_publishes_them() {
        let cases = cases();
        let mut seen = 0;
        for table in [
            "masterminds_constraint_check",
            "masterminds_constraints_check",
        ] {
            for row in cases[table].as_array().unwrap() {
                let (range, tag, want) = (
                    row[0].as_str().unwrap(),
                    row[1].as_str().unwrap(),
                    row[2].as_bool().unwrap(),
                );
                let parsed = Range::parse(range).unwrap_or_else(|e| panic!("{table}: {e}"));
                assert_eq!(parsed.matches(tag), want, "{table}: {range:?} ~ {tag:?}");
                seen += 1;
            }
        }
        assert!(seen > 200, "{seen} cases");
    }

    #[test]
    fn ranges_are_refused_where_masterminds_and_flux_refuse_them() {
        let cases = cases();
        for key in ["masterminds_new_constraint_valid", "flux_new_semver_valid"] {
            for range in strings(&cases[key]) {
                assert!(Range::parse(range).is_ok(), "{key}: {range:?}");
            }
        }
        for key in [
            "masterminds_new_constraint_invalid",
            "flux_new_semver_invalid",
        ] {
            for range in strings(&cases[key]) {
                assert!(Range::parse(range).is_err(), "{key}: {range:?}");
            }
        }
    }

    #[test]
    fn the_latest_tag_is_the_one_flux_picks() {
        let cases = cases();
        for case in cases["flux_semver_latest"].as_array().unwrap() {
            let range = Range::parse(case["range"].as_str().unwrap()).unwrap();
            let tags = strings(&case["tags"]);
            let got = latest(tags.iter().copied(), |t| range.matches(t), &Order::Semver);
            assert_eq!(got, case["latest"].as_str(), "{tags:?}");
        }
        let numbers = Order::Numerical(whole_tag("(.*)").unwrap());
        for case in cases["flux_numerical_latest"].as_array().unwrap() {
            let mut tags = strings(&case["tags"]);
            for _ in 0..2 {
                let got = latest(tags.iter().copied(), |_| true, &numbers);
                assert_eq!(got, case["latest"].as_str(), "{tags:?}");
                tags.reverse();
            }
        }
    }

    /// What a user of Argo CD Image Updater writes, and what Cargo would read differently.
    #[test]
    fn ranges_read_the_masterminds_way_not_the_cargo_way() {
        let m = |range: &str, tag: &str| Range::parse(range).unwrap().matches(tag);
        assert!(!m("2.1", "2.2.1"), "Cargo reads 2.1 as ^2.1");
        assert!(m("^1.4 || ^3", "3.1.0"));
        assert!(!m("^1.4 || ^3", "2.5.0"));
        assert!(m(">= 1.4, < 2", "v1.4.2"));
        assert!(!m("^1.4", "latest"));
        assert!(!m("^1.4", "1.5.0-rc.1"), "pre-releases only when asked for");
        assert!(m("!=1.4.2, ^1.4", "1.4.3"));
        assert!(!m("!=1.4.2, ^1.4", "1.4.2"));
        assert!(Range::parse(">=1.4 <<2").is_err());
        assert!(Order::Semver.newer("1.4.3+build.2", "1.4.2"));
        assert!(
            !Order::Semver.newer("1.4.3+build.2", "1.4.3+build.1"),
            "build metadata is no version"
        );
    }

    #[test]
    fn captures_order_numerically_or_alphabetically_and_only_within_the_pattern() {
        let build = Order::Numerical(whole_tag(r"build-(\d+)").unwrap());
        assert!(build.newer("build-100", "build-99"));
        assert!(!build.newer("build-99", "build-100"));
        assert!(!build.newer("build-100", "latest"), "outside the pattern");
        assert!(
            !build.newer("xbuild-101", "build-100"),
            "the pattern is the whole tag"
        );
        let dated = Order::Alphabetical(whole_tag(r"main-(\d{4}-\d{2}-\d{2})-[0-9a-f]+").unwrap());
        assert!(dated.newer("main-2026-12-01-ab12", "main-2026-11-21-ff00"));
        assert!(!dated.newer("main-2026-11-21-ff00", "main-2026-12-01-ab12"));
        assert!(Order::Semver.newer("1.10.0", "1.9.9"));
        assert!(!Order::Semver.newer("1.4.1", "1.4.3"));
    }
}
