//! What a CloudFormation request asks of the access entries: which clusters get an entry for the
//! principal and which lose it. Pure: the request's properties in, a plan out.

use std::collections::BTreeSet;

use serde::Deserialize;

/// The custom resource's properties, as CloudFormation sends them (lists stay lists; every
/// scalar arrives as a string).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    #[serde(default)]
    pub cluster_names: Vec<String>,
    #[serde(default)]
    pub principal_arn: String,
    #[serde(default)]
    pub kubernetes_groups: Vec<String>,
}

/// Properties checked against EKS's rules, clusters de-duplicated and in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub principal_arn: String,
    pub clusters: BTreeSet<String>,
    pub groups: Vec<String>,
}

/// Whom entries may be made for: the stack's own function roles (`ALLOWED_PRINCIPALS`, which the
/// template fills with their ARNs), in the `bridgekeeper:` groups only. The role's IAM conditions
/// say the same; this holds if they are ever loosened, and for a request nobody meant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed {
    pub principals: Vec<String>,
}

pub const GROUP_PREFIX: &str = "bridgekeeper:";

impl Allowed {
    pub fn from_env(env: &bridgekeeper::config::Env) -> Allowed {
        Allowed {
            principals: env.list("ALLOWED_PRINCIPALS"),
        }
    }
}

impl Properties {
    pub fn validate(&self, allowed: &Allowed) -> Result<Grant, String> {
        let principal = self.principal_arn.trim();
        // CreateAccessEntry takes IAM role or user ARNs, never an STS session (EKS API reference).
        let is_iam = principal.starts_with("arn:")
            && principal.split(':').nth(2) == Some("iam")
            && (principal.contains(":role/") || principal.contains(":user/"));
        if !is_iam {
            return Err(format!(
                "PrincipalArn {principal:?} is not an IAM role or user ARN"
            ));
        }
        let mut clusters = BTreeSet::new();
        for name in &self.cluster_names {
            let name = name.trim();
            // A CommaDelimitedList parameter with a trailing comma yields an empty item.
            if name.is_empty() {
                continue;
            }
            if !valid_cluster_name(name) {
                return Err(format!(
                    "ClusterNames: {name:?} is not a valid EKS cluster name \
                     (1-100 letters, digits, - and _, starting with a letter or digit)"
                ));
            }
            clusters.insert(name.to_owned());
        }
        let groups: Vec<String> = self
            .kubernetes_groups
            .iter()
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect();
        // EKS reserves the system: prefix for its own groups.
        if let Some(bad) = groups.iter().find(|g| g.starts_with("system:")) {
            return Err(format!(
                "KubernetesGroups: {bad:?} uses the reserved system: prefix"
            ));
        }
        if groups.is_empty() {
            return Err("KubernetesGroups is empty: the entry would grant nothing".into());
        }
        if let Some(bad) = groups.iter().find(|g| !g.starts_with(GROUP_PREFIX)) {
            return Err(format!(
                "KubernetesGroups: {bad:?} is not a {GROUP_PREFIX} group; only Bridgekeeper's own groups are granted"
            ));
        }
        if !allowed.principals.iter().any(|p| p == principal) {
            return Err(format!(
                "PrincipalArn {principal:?} is not one of this stack's function roles (ALLOWED_PRINCIPALS)"
            ));
        }
        Ok(Grant {
            principal_arn: principal.to_owned(),
            clusters,
            groups,
        })
    }
}

fn valid_cluster_name(s: &str) -> bool {
    s.len() <= 100
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The request, reduced to what decides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(Grant),
    Update { old: Option<Grant>, new: Grant },
    Delete(Option<Grant>),
}

/// What to do: make sure `ensure` clusters have the entry (create, or set its groups), remove it
/// from `remove` clusters, and the physical id to answer with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub principal_arn: String,
    pub groups: Vec<String>,
    pub ensure: Vec<String>,
    pub remove: Vec<String>,
    pub physical_id: String,
}

pub fn plan(request: &Request, current_physical_id: Option<&str>) -> Plan {
    match request {
        Request::Create(grant) => Plan {
            principal_arn: grant.principal_arn.clone(),
            groups: grant.groups.clone(),
            ensure: grant.clusters.iter().cloned().collect(),
            remove: Vec::new(),
            physical_id: physical_id(&grant.principal_arn),
        },
        Request::Update { old, new } => {
            let same_principal = old
                .as_ref()
                .is_some_and(|o| o.principal_arn == new.principal_arn);
            // A new principal is a new resource: CloudFormation deletes the old one (old
            // properties) once the update succeeds, so nothing is removed here.
            let remove = match old {
                Some(old) if same_principal => {
                    old.clusters.difference(&new.clusters).cloned().collect()
                }
                _ => Vec::new(),
            };
            Plan {
                principal_arn: new.principal_arn.clone(),
                groups: new.groups.clone(),
                ensure: new.clusters.iter().cloned().collect(),
                remove,
                physical_id: physical_id(&new.principal_arn),
            }
        }
        // Properties that never validated created nothing: succeed, so the stack can go.
        Request::Delete(grant) => Plan {
            principal_arn: grant
                .as_ref()
                .map(|g| g.principal_arn.clone())
                .unwrap_or_default(),
            groups: Vec::new(),
            ensure: Vec::new(),
            remove: grant
                .as_ref()
                .map(|g| g.clusters.iter().cloned().collect())
                .unwrap_or_default(),
            physical_id: current_physical_id.unwrap_or_default().to_owned(),
        },
    }
}

/// One resource per principal: a change of principal replaces it.
pub fn physical_id(principal_arn: &str) -> String {
    format!("access-entries:{principal_arn}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/bk-ImageRolloutFunctionRole-ABC";

    fn props(clusters: &[&str]) -> Properties {
        Properties {
            cluster_names: clusters.iter().map(|s| s.to_string()).collect(),
            principal_arn: ROLE.into(),
            kubernetes_groups: vec!["bridgekeeper:image-rollout".into()],
        }
    }

    fn allowed() -> Allowed {
        Allowed {
            principals: vec![ROLE.into()],
        }
    }

    fn grant(clusters: &[&str]) -> Grant {
        props(clusters).validate(&allowed()).unwrap()
    }

    #[test]
    fn create_ensures_every_cluster_however_many() {
        let names: Vec<String> = (0..12).map(|i| format!("cluster-{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let p = plan(&Request::Create(grant(&refs)), None);
        assert_eq!(p.ensure.len(), 12);
        assert!(p.remove.is_empty());
        assert_eq!(p.physical_id, format!("access-entries:{ROLE}"));
    }

    #[test]
    fn empty_items_and_duplicates_are_dropped() {
        let g = grant(&["dev", "", " prod ", "dev"]);
        assert_eq!(g.clusters.into_iter().collect::<Vec<_>>(), ["dev", "prod"]);
    }

    #[test]
    fn update_removes_only_clusters_no_longer_listed() {
        let p = plan(
            &Request::Update {
                old: Some(grant(&["dev", "staging", "prod"])),
                new: grant(&["dev", "prod", "qa"]),
            },
            Some("x"),
        );
        assert_eq!(p.ensure, ["dev", "prod", "qa"]);
        assert_eq!(p.remove, ["staging"]);
    }

    #[test]
    fn new_principal_leaves_removal_to_the_delete_of_the_old_resource() {
        let mut new = grant(&["dev"]);
        new.principal_arn = "arn:aws:iam::111122223333:role/other".into();
        let p = plan(
            &Request::Update {
                old: Some(grant(&["dev", "prod"])),
                new,
            },
            Some("x"),
        );
        assert!(p.remove.is_empty());
        assert_eq!(
            p.physical_id,
            "access-entries:arn:aws:iam::111122223333:role/other"
        );
    }

    #[test]
    fn delete_removes_every_cluster_and_keeps_the_physical_id() {
        let p = plan(&Request::Delete(Some(grant(&["a", "b"]))), Some("pid"));
        assert_eq!(p.remove, ["a", "b"]);
        assert_eq!(p.physical_id, "pid");
        let p = plan(&Request::Delete(None), Some("pid"));
        assert!(p.remove.is_empty() && p.ensure.is_empty());
    }

    #[test]
    fn bad_properties_are_named() {
        let mut p = props(&["dev"]);
        p.principal_arn = "arn:aws:sts::111122223333:assumed-role/x/y".into();
        assert!(p.validate(&allowed()).unwrap_err().contains("PrincipalArn"));
        let p = props(&["-dev"]);
        assert!(p.validate(&allowed()).unwrap_err().contains("\"-dev\""));
        let mut p = props(&["dev"]);
        p.kubernetes_groups = vec!["system:masters".into()];
        assert!(p.validate(&allowed()).unwrap_err().contains("reserved"));
        let mut p = props(&["dev"]);
        p.kubernetes_groups = vec![];
        assert!(
            p.validate(&allowed())
                .unwrap_err()
                .contains("KubernetesGroups")
        );
    }

    /// With its IAM conditions loosened, the function would have made an entry for any principal
    /// in any group a request named (system:masters aside).
    #[test]
    fn only_the_stacks_function_roles_in_bridgekeeper_groups_are_granted() {
        let mut p = props(&["dev"]);
        p.kubernetes_groups = vec!["cluster-admins".into()];
        assert!(
            p.validate(&allowed())
                .unwrap_err()
                .contains("bridgekeeper:")
        );
        let mut p = props(&["dev"]);
        p.principal_arn = "arn:aws:iam::111122223333:role/attacker".into();
        let err = p.validate(&allowed()).unwrap_err();
        assert!(err.contains("ALLOWED_PRINCIPALS"), "{err}");
        assert!(props(&["dev"]).validate(&Allowed::default()).is_err());
    }
}
