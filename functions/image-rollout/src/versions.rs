//! Pure: how tags are ordered when a rule moves workloads between versions (`bump`), as Keel,
//! Flux image automation and Argo CD Image Updater order them: semver (ranges written the
//! Masterminds way), or the capture of a regular expression, numerically or alphabetically.

use regex::Regex;

/// A range as Flux and Argo CD Image Updater accept it (Masterminds/semver): comparators
/// separated by spaces or commas (`>=1.4 <2`, `>=1.4, <2`), `^1.4`, `~1.4.0`, `1.x`, and
/// alternatives joined by `||`. Pre-releases match only a comparator that names one (semver's
/// rule, in both libraries).
pub fn parse_range(range: &str) -> Result<Vec<semver::VersionReq>, String> {
    range
        .split("||")
        .map(|alt| {
            let mut parts: Vec<String> = Vec::new();
            for token in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
                // `>= 1.4`: an operator written apart from its version belongs to it.
                match parts.last_mut() {
                    Some(last) if last.chars().all(|c| "<>=~^".contains(c)) => last.push_str(token),
                    _ => parts.push(token.to_owned()),
                }
            }
            let joined = parts.join(", ");
            semver::VersionReq::parse(&joined).map_err(|e| format!("semver {range:?}: {e}"))
        })
        .collect()
}

/// A version tag (`1.4.3`, `v1.4.3`), as semver orders it.
pub fn version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
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

impl Order {
    /// `pushed` comes after `current`: a move up. Never down, never sideways, never between a
    /// tag of the order and one outside it.
    pub fn newer(&self, pushed: &str, current: &str) -> bool {
        match self {
            Order::Semver => {
                matches!((version(pushed), version(current)), (Some(p), Some(c)) if p > c)
            }
            Order::Numerical(re) => {
                let n = |t| key(re, t).and_then(|k| k.parse::<u128>().ok());
                matches!((n(pushed), n(current)), (Some(p), Some(c)) if p > c)
            }
            Order::Alphabetical(re) => {
                matches!((key(re, pushed), key(re, current)), (Some(p), Some(c)) if p > c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
