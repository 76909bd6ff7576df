//! Pure: the version pushes a reconcile makes up for. A workload following versions (`bump`)
//! is on `1.4.2`; `1.4.3` was pushed, and its event never came (ECR's events are best effort)
//! or came before the workload existed. The repository's tags say so: the newest tag its rule
//! admits, when newer than what the workload runs, is rolled as if its push had just arrived.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{Followed, Rule};
use crate::image::Push;
use crate::versions::{Order, latest};

/// An ECR repository: `(registry, repository)`.
pub type Repository = (String, String);

/// A repository's tagged images, `tag → digest`.
pub type Tags = BTreeMap<String, String>;

/// The rule that moves `repository:tag` between versions in `cluster`: the first that names the
/// cluster and covers the tag, when it has `bump`.
fn version_rule<'r>(
    rules: &'r [Rule],
    cluster: &str,
    repository: &str,
    tag: &str,
) -> Option<&'r Rule> {
    rules
        .iter()
        .find(|r| r.covers(cluster, repository, tag))
        .filter(|r| r.bump.is_some())
}

/// The repositories whose tags a reconcile lists: those a workload follows versions of.
pub fn repositories<'a>(
    rules: &[Rule],
    followed_per: impl IntoIterator<Item = (&'a str, &'a [Followed])>,
) -> Vec<Repository> {
    let mut out = BTreeSet::new();
    for (cluster, followed) in followed_per {
        for (registry, repository, tag) in followed {
            if version_rule(rules, cluster, repository, tag).is_some() {
                out.insert((registry.clone(), repository.clone()));
            }
        }
    }
    out.into_iter().collect()
}

/// What one cluster catches up to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// The newest admitted tag of each version a workload follows, when newer; of one
    /// repository, the highest first.
    pub pushes: Vec<Push>,
    /// The followed versions these move on from: not rolled to their own digest in the same
    /// run (the listing the run holds is from before the move).
    pub superseded: Vec<Followed>,
}

/// The pushes `cluster` missed, from the tags listed for each repository.
pub fn missed(
    rules: &[Rule],
    cluster: &str,
    followed: &[Followed],
    listed: &BTreeMap<Repository, Tags>,
) -> CatchUp {
    let mut found: Vec<(Push, &Order)> = Vec::new();
    let mut superseded = Vec::new();
    for key @ (registry, repository, tag) in followed {
        let Some(rule) = version_rule(rules, cluster, repository, tag) else {
            continue;
        };
        let (Some(order), Some(tags)) = (
            rule.bump.as_ref(),
            listed.get(&(registry.clone(), repository.clone())),
        ) else {
            continue;
        };
        let Some(newest) = latest(
            tags.keys().map(String::as_str),
            |t| rule.matches(repository, t),
            order,
        ) else {
            continue;
        };
        if !order.newer(newest, tag) {
            continue;
        }
        superseded.push(key.clone());
        let push = Push {
            registry: registry.clone(),
            repository: repository.clone(),
            tag: newest.to_owned(),
            digest: tags[newest].clone(),
        };
        if found.iter().any(|(p, _)| p == &push) {
            continue;
        }
        // Highest first within a repository: a workload two rules cover moves once, to the
        // higher version, and the lower push finds it already past.
        let at = found
            .iter()
            .position(|(p, o)| p.repository == push.repository && o.newer(&push.tag, &p.tag))
            .unwrap_or(found.len());
        found.insert(at, (push, order));
    }
    CatchUp {
        pushes: found.into_iter().map(|(p, _)| p).collect(),
        superseded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RuleSpec;
    use serde_json::json;

    const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn rules(specs: serde_json::Value) -> Vec<Rule> {
        serde_json::from_value::<Vec<RuleSpec>>(specs)
            .unwrap()
            .into_iter()
            .map(|s| Rule::from_spec(s, &["dev".into(), "prod".into()]).unwrap())
            .collect()
    }

    fn followed(tag: &str) -> Followed {
        (REGISTRY.into(), "shop/api".into(), tag.into())
    }

    fn listed(tags: &[&str]) -> BTreeMap<Repository, Tags> {
        let tags = tags
            .iter()
            .map(|t| (t.to_string(), format!("sha256:{t}")))
            .collect();
        BTreeMap::from([((REGISTRY.to_owned(), "shop/api".to_owned()), tags)])
    }

    #[test]
    fn a_workload_on_1_4_2_catches_up_to_the_newest_tag_its_range_admits() {
        let rules = rules(json!([
            {"repository": "shop/api", "semver": "^1.4", "bump": true, "clusters": ["dev"]}
        ]));
        let tags = listed(&["1.4.1", "1.4.2", "1.4.3", "1.5.0-rc.1", "2.0.0", "latest"]);
        let got = missed(&rules, "dev", &[followed("1.4.2")], &tags);
        assert_eq!(got.pushes.len(), 1);
        assert_eq!(got.pushes[0].tag, "1.4.3");
        assert_eq!(got.pushes[0].digest, "sha256:1.4.3");
        assert_eq!(got.superseded, vec![followed("1.4.2")]);
        assert_eq!(
            repositories(&rules, [("dev", &[followed("1.4.2")][..])]),
            vec![(REGISTRY.to_owned(), "shop/api".to_owned())]
        );
    }

    #[test]
    fn nothing_is_caught_up_at_the_newest_version_without_bump_or_in_another_cluster() {
        let bump = rules(json!([
            {"repository": "shop/api", "semver": "^1.4", "bump": true, "clusters": ["dev"]}
        ]));
        let tags = listed(&["1.4.1", "1.4.3"]);
        assert_eq!(
            missed(&bump, "dev", &[followed("1.4.3")], &tags),
            CatchUp::default()
        );
        assert_eq!(
            missed(&bump, "prod", &[followed("1.4.1")], &tags),
            CatchUp::default()
        );
        let trigger_only = rules(json!([
            {"repository": "shop/api", "semver": "^1.4", "clusters": ["dev"]}
        ]));
        assert_eq!(
            missed(&trigger_only, "dev", &[followed("1.4.1")], &tags),
            CatchUp::default()
        );
        assert!(repositories(&trigger_only, [("dev", &[followed("1.4.1")][..])]).is_empty());
    }

    #[test]
    fn two_rules_of_one_repository_catch_up_highest_first() {
        let rules = rules(json!([
            {"repository": "shop/api", "semver": "^1", "bump": true, "clusters": ["dev"], "namespaces": ["a"]},
            {"repository": "shop/api", "semver": ">=2", "bump": true, "clusters": ["dev"], "namespaces": ["b"]}
        ]));
        let tags = listed(&["1.5.0", "1.9.0", "2.0.0", "2.1.0"]);
        let got = missed(
            &rules,
            "dev",
            &[followed("1.5.0"), followed("2.0.0")],
            &tags,
        );
        let order: Vec<&str> = got.pushes.iter().map(|p| p.tag.as_str()).collect();
        assert_eq!(order, ["2.1.0", "1.9.0"]);
    }
}
