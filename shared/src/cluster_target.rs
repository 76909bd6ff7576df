//! Where each cluster is: the `CLUSTERS` setting read into targets (an EKS cluster by name or
//! ARN, or a URL), checked against what the stack granted.

use std::fmt;
use std::str::FromStr;

use crate::accounts::{Scope, is_account_id};

/// `LOCAL_HTTP_CLUSTERS=true`: local runs may name `http://` stand-ins in `CLUSTERS`.
pub const LOCAL_HTTP_VAR: &str = "LOCAL_HTTP_CLUSTERS";

/// Where a cluster is: `https://...`/`http://...` is a URL; an EKS cluster ARN
/// (`arn:aws:eks:<region>:<account>:cluster/<name>`) is a cluster in that account and region,
/// reached with the member role there; anything else an EKS cluster name in the function's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTarget {
    Eks { name: String, scope: Scope },
    Url { url: String },
}

impl ClusterTarget {
    /// An EKS cluster by name, in the function's own account and region.
    pub fn eks(name: impl Into<String>) -> Self {
        ClusterTarget::Eks {
            name: name.into(),
            scope: Scope::default(),
        }
    }
}

/// EKS names (clusters, node groups, add-ons in ARNs): 1-100 characters, a letter or digit first,
/// then letters, digits, - and _.
pub fn is_eks_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl FromStr for ClusterTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            s.parse::<http::Uri>()
                .map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
            return Ok(ClusterTarget::Url { url: s.to_owned() });
        }
        if s.starts_with("arn:") {
            let arn = s.parse::<crate::config::Arn>().ok();
            let cluster = arn.as_ref().and_then(|a| {
                let name = a.resource().strip_prefix("cluster/")?;
                (a.service() == "eks"
                    && !a.region().is_empty()
                    && is_account_id(a.account())
                    && is_eks_name(name))
                .then(|| ClusterTarget::Eks {
                    name: name.to_owned(),
                    scope: Scope::account(a.account()).in_region(a.region()),
                })
            });
            return cluster.ok_or_else(|| {
                format!(
                    "{s:?} is not an EKS cluster ARN (arn:aws:eks:<region>:<account>:cluster/<name>)"
                )
            });
        }
        if is_eks_name(s) {
            Ok(ClusterTarget::eks(s))
        } else {
            Err(format!(
                "{s:?} is neither an http(s) URL nor a valid EKS cluster name"
            ))
        }
    }
}

impl fmt::Display for ClusterTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterTarget::Eks { name, scope } if *scope == Scope::default() => {
                write!(f, "eks:{name}")
            }
            ClusterTarget::Eks { name, scope } => write!(f, "eks:{name} ({scope})"),
            ClusterTarget::Url { url } => f.write_str(url),
        }
    }
}

/// `alias=<EKS cluster name, EKS cluster ARN or URL>`, comma-separated
/// (`dev=dev-eks,prod=arn:aws:eks:eu-west-1:222222222222:cluster/prod`), from the variable `var`;
/// aliases are what rules and reports call the clusters.
pub fn targets_from_env(
    env: &crate::config::Env,
    var: &str,
) -> Result<Vec<(String, ClusterTarget)>, crate::config::ConfigError> {
    let bad = |why: String| crate::config::ConfigError::new(var, why);
    let list = env.list(var);
    if list.is_empty() {
        return Err(bad(
            "is not set; expected alias=<EKS cluster name or URL>, comma-separated".into(),
        ));
    }
    let mut out: Vec<(String, ClusterTarget)> = Vec::new();
    for item in list {
        let (alias, target) = item.split_once('=').ok_or_else(|| {
            bad(format!(
                "entry {item:?} is not alias=<EKS cluster name or URL>"
            ))
        })?;
        let alias = alias.trim().to_owned();
        if out.iter().any(|(a, _)| *a == alias) {
            return Err(bad(format!("alias {alias:?} appears twice")));
        }
        let target: ClusterTarget = target
            .parse()
            .map_err(|why| bad(format!("entry {alias:?}: {why}")))?;
        // A real API server speaks https: a plain http:// target would send the bearer token
        // in the clear. Only a local run against a stand-in says so, explicitly.
        if let ClusterTarget::Url { url } = &target
            && url.starts_with("http://")
            && !env.flag(LOCAL_HTTP_VAR, false)?
        {
            return Err(bad(format!(
                "entry {alias:?} is plain http ({url}); API servers are reached over https, and \
                 http:// is only for local stand-ins ({LOCAL_HTTP_VAR}=true)"
            )));
        }
        out.push((alias, target));
    }
    // The template grants DescribeCluster and an access entry for EKS_CLUSTERS only: a name
    // missing there would fail every run with AccessDenied, so it fails at init instead. A
    // member account's clusters are granted by the member stack, not here.
    let granted = env.list(GRANTED_VAR);
    let own = env.optional(crate::accounts::ACCOUNT_VAR);
    if !granted.is_empty() {
        for (alias, target) in &out {
            if let ClusterTarget::Eks { name, scope } = target
                && (scope.account.is_none() || scope.account == own)
                && !granted.iter().any(|g| g == name)
            {
                return Err(bad(format!(
                    "entry {alias:?} names EKS cluster {name:?}, which is not in {GRANTED_VAR} \
                     ({}); add it to the stack's EksClusters parameter",
                    granted.join(",")
                )));
            }
        }
    }
    Ok(out)
}

/// The EKS cluster names the stack granted the function (DescribeCluster, access entry).
pub const GRANTED_VAR: &str = "EKS_CLUSTERS";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Scope;

    #[test]
    fn cluster_lists_parse_and_bad_entries_are_named() {
        use crate::config::Env;
        let env = Env::from_pairs([
            ("CLUSTERS", "dev=dev-eks, local=http://127.0.0.1:5556"),
            (LOCAL_HTTP_VAR, "true"),
        ]);
        let t = targets_from_env(&env, "CLUSTERS").unwrap();
        assert_eq!(t[0], ("dev".into(), ClusterTarget::eks("dev-eks")));
        assert_eq!(t[1].0, "local");
        for bad in ["dev", "dev=a,dev=b", "dev=not a name", ""] {
            let env = Env::from_pairs([("CLUSTERS", bad)]);
            assert_eq!(
                targets_from_env(&env, "CLUSTERS").unwrap_err().var,
                "CLUSTERS",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_eks_target_the_stack_did_not_grant_fails_at_init() {
        use crate::config::Env;
        let env = Env::from_pairs([
            (
                "CLUSTERS",
                "dev=dev-eks,prod=prod-eks,local=http://127.0.0.1:1",
            ),
            ("EKS_CLUSTERS", "dev-eks"),
            (LOCAL_HTTP_VAR, "true"),
        ]);
        let err = targets_from_env(&env, "CLUSTERS").unwrap_err();
        assert!(err.problem.contains("\"prod-eks\""), "{err}");
        assert!(err.problem.contains("EKS_CLUSTERS"), "{err}");
        let env = Env::from_pairs([
            ("CLUSTERS", "dev=dev-eks,local=http://127.0.0.1:1"),
            ("EKS_CLUSTERS", "dev-eks,prod-eks"),
            (LOCAL_HTTP_VAR, "true"),
        ]);
        assert_eq!(targets_from_env(&env, "CLUSTERS").unwrap().len(), 2);
    }

    #[test]
    fn targets_parse_from_url_or_name() {
        assert_eq!(
            "http://127.0.0.1:8080".parse::<ClusterTarget>().unwrap(),
            ClusterTarget::Url {
                url: "http://127.0.0.1:8080".into()
            }
        );
        assert_eq!(
            " prod-eks_1 ".parse::<ClusterTarget>().unwrap(),
            ClusterTarget::eks("prod-eks_1")
        );
        for bad in ["", "-prod", "prod cluster", "eks:prod", &"x".repeat(101)] {
            assert!(bad.parse::<ClusterTarget>().is_err(), "{bad:?}");
        }
    }

    /// The review: plain http:// targets were accepted for real clusters (the bearer token in
    /// the clear); now only with the explicit local-runs switch.
    #[test]
    fn a_plain_http_cluster_needs_the_local_runs_switch() {
        use crate::config::Env;
        let env = Env::from_pairs([("CLUSTERS", "prod=http://10.0.0.1:6443")]);
        let err = targets_from_env(&env, "CLUSTERS").unwrap_err();
        assert_eq!(err.var, "CLUSTERS");
        assert!(err.problem.contains(LOCAL_HTTP_VAR), "{err}");
        let local = Env::from_pairs([
            ("CLUSTERS", "prod=http://127.0.0.1:8080"),
            (LOCAL_HTTP_VAR, "true"),
        ]);
        assert_eq!(targets_from_env(&local, "CLUSTERS").unwrap().len(), 1);
        let tls = Env::from_pairs([("CLUSTERS", "prod=https://10.0.0.1:6443")]);
        assert_eq!(targets_from_env(&tls, "CLUSTERS").unwrap().len(), 1);
    }

    #[test]
    fn a_cluster_arn_names_its_account_and_region() {
        let target: ClusterTarget = "arn:aws:eks:us-east-2:222222222222:cluster/prod-eks"
            .parse()
            .unwrap();
        assert_eq!(
            target,
            ClusterTarget::Eks {
                name: "prod-eks".into(),
                scope: Scope::account("222222222222").in_region("us-east-2"),
            }
        );
        assert_eq!(
            target.to_string(),
            "eks:prod-eks (account 222222222222 in us-east-2)"
        );
        for bad in [
            "arn:aws:eks:us-east-2:2222:cluster/prod",
            "arn:aws:ecs:us-east-2:222222222222:cluster/prod",
            "arn:aws:eks::222222222222:cluster/prod",
            "arn:aws:eks:us-east-2:222222222222:nodegroup/prod/ng/1",
            "arn:aws:eks:us-east-2:222222222222:cluster/bad name",
        ] {
            let err = bad.parse::<ClusterTarget>().unwrap_err();
            assert!(err.contains("not an EKS cluster ARN"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_member_accounts_cluster_is_granted_by_the_member_stack_not_eks_clusters() {
        use crate::config::Env;
        let member = "prod=arn:aws:eks:eu-west-1:222222222222:cluster/prod-eks";
        let env = Env::from_pairs([
            ("CLUSTERS", member),
            ("EKS_CLUSTERS", "dev-eks"),
            ("ACCOUNT_ID", "111111111111"),
        ]);
        assert_eq!(targets_from_env(&env, "CLUSTERS").unwrap().len(), 1);
        // The same ARN in the hub's own account needs the hub's grant like a plain name.
        let env = Env::from_pairs([
            ("CLUSTERS", member),
            ("EKS_CLUSTERS", "dev-eks"),
            ("ACCOUNT_ID", "222222222222"),
        ]);
        let err = targets_from_env(&env, "CLUSTERS").unwrap_err();
        assert!(err.problem.contains("\"prod-eks\""), "{err}");
    }
}
