//! Pure: which names a source may claim at all. A hostname comes from whoever can create an
//! Ingress or a Service, usually with less power than Bridgekeeper, so it is checked as a name
//! (RFC 1123, nothing in the `_` namespace that ownership and other service records use) and
//! against `HOST_POLICY`, which says which namespaces may claim which part of the zones.

use std::fmt;

/// A host as a source may ask for it: lower case, no final dot, RFC 1123 labels (letters,
/// digits and `-`, not at either end, 1-63 characters, 253 in all), `*` only as the whole first
/// label. `_` is refused anywhere: `_bridgekeeper.<host>` is another host's ownership record,
/// and `_acme-challenge`, `_dmarc`, `_domainkey` names are not for tenants either.
pub fn check_host(raw: &str) -> Result<String, String> {
    let name = raw
        .trim()
        .trim_end_matches('.')
        .replace("\\052", "*")
        .to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{raw:?} is not a DNS name (1 to 253 characters)"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{raw:?} is a single label, not a name in a zone"));
    }
    for (i, label) in labels.iter().enumerate() {
        if *label == "*" && i == 0 {
            continue;
        }
        if label.starts_with('_') {
            return Err(format!(
                "{raw:?}: the label {label:?} starts with _, which is kept for ownership and \
                 service records (RFC 8552), never a host"
            ));
        }
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{raw:?}: the label {label:?} is not a hostname label (RFC 1123: letters, digits \
                 and - inside, 1 to 63 characters; * only as the whole first label)"
            ));
        }
    }
    Ok(name)
}

fn under(name: &str, domain: &str) -> bool {
    name == domain || name.ends_with(&format!(".{domain}"))
}

/// Who an entry speaks for: a namespace in every cluster, or in one cluster; `*` for any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Who {
    cluster: Option<String>,
    namespace: Option<String>,
}

impl Who {
    fn matches(&self, cluster: &str, namespace: &str) -> bool {
        self.cluster.as_deref().is_none_or(|c| c == cluster)
            && self.namespace.as_deref().is_none_or(|n| n == namespace)
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.namespace.as_deref().unwrap_or("*");
        match &self.cluster {
            Some(c) => write!(f, "{c}/{ns}"),
            None => f.write_str(ns),
        }
    }
}

/// What an entry grants.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Grant {
    /// `shop.example.com`: that name and every name under it, no wildcard, no zone apex.
    Subtree(String),
    /// `*.shop.example.com`: the same, and wildcard names under it.
    WithWildcards(String),
    /// `@example.com`: the apex of the zone `example.com`, that name only.
    Apex(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    who: Who,
    grant: Grant,
}

/// `HOST_POLICY`: `<who>=<grant>` entries, comma-separated; a namespace may appear in several.
/// `who` is `<namespace>`, `<cluster>/<namespace>`, `*` or `<cluster>/*`; `grant` is
/// `shop.example.com`, `*.shop.example.com` or `@example.com` (see [`Grant`]). Unset, any
/// namespace may claim any name the zone filters allow, except zone apexes and wildcards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    entries: Option<Vec<Entry>>,
}

/// A claim the policy refuses, and why, in words for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl HostPolicy {
    /// Every entry, or the first that is not one, named.
    pub fn parse(items: &[String]) -> Result<HostPolicy, String> {
        if items.is_empty() {
            return Ok(HostPolicy::default());
        }
        let mut entries = Vec::new();
        for item in items {
            let bad = |why: &str| format!("entry {item:?}: {why}");
            let (who, grant) = item
                .split_once('=')
                .ok_or_else(|| bad("expected <namespace>=<domain>"))?;
            let (cluster, namespace) = match who.trim().split_once('/') {
                Some((c, n)) => (Some(c.trim()), n.trim()),
                None => (None, who.trim()),
            };
            let name_ok = |s: &str| {
                !s.is_empty()
                    && s.len() <= 63
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            if cluster.is_some_and(|c| !name_ok(c)) || (namespace != "*" && !name_ok(namespace)) {
                return Err(bad(
                    "the part before = is a namespace, <cluster>/<namespace> or * (lower case)",
                ));
            }
            let grant = grant.trim().to_ascii_lowercase();
            let grant = if let Some(apex) = grant.strip_prefix('@') {
                Grant::Apex(check_host(apex).map_err(|e| bad(&e))?)
            } else if let Some(domain) = grant.strip_prefix("*.") {
                Grant::WithWildcards(check_host(domain).map_err(|e| bad(&e))?)
            } else {
                Grant::Subtree(check_host(&grant).map_err(|e| bad(&e))?)
            };
            if matches!(&grant, Grant::Apex(d) | Grant::WithWildcards(d) | Grant::Subtree(d) if d.contains('*'))
            {
                return Err(bad("a wildcard is written *.<domain>, once, at the front"));
            }
            entries.push(Entry {
                who: Who {
                    cluster: cluster.map(str::to_owned),
                    namespace: (namespace != "*").then(|| namespace.to_owned()),
                },
                grant,
            });
        }
        Ok(HostPolicy {
            entries: Some(entries),
        })
    }

    pub fn is_set(&self) -> bool {
        self.entries.is_some()
    }

    /// Whether the source in `namespace` of `cluster` may claim `host`, which is the apex of its
    /// zone when `apex`.
    pub fn allows(
        &self,
        cluster: &str,
        namespace: &str,
        host: &str,
        apex: bool,
    ) -> Result<(), Refused> {
        let wildcard = host.starts_with("*.");
        let Some(entries) = &self.entries else {
            return match (apex, wildcard) {
                (true, _) => Err(Refused(format!(
                    "{host} is a zone apex; only a HOST_POLICY entry @{host} lets a namespace claim it"
                ))),
                (_, true) => Err(Refused(format!(
                    "{host} is a wildcard; only a HOST_POLICY entry *.<domain> lets a namespace claim one"
                ))),
                _ => Ok(()),
            };
        };
        let granted = entries
            .iter()
            .filter(|e| e.who.matches(cluster, namespace))
            .any(|e| match &e.grant {
                Grant::Apex(d) => apex && host == d,
                Grant::Subtree(d) => !apex && !wildcard && under(host, d),
                Grant::WithWildcards(d) => !apex && under(host, d),
            });
        if granted {
            return Ok(());
        }
        let what = if apex {
            "the zone apex "
        } else if wildcard {
            "the wildcard "
        } else {
            ""
        };
        Err(Refused(format!(
            "HOST_POLICY gives namespace {namespace} of cluster {cluster} no claim to {what}{host}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(s: &str) -> HostPolicy {
        let items: Vec<String> = s.split(',').map(str::to_owned).collect();
        HostPolicy::parse(&items).unwrap()
    }

    #[test]
    fn a_hostname_is_rfc_1123_labels_and_never_an_underscore_name() {
        assert_eq!(check_host("API.Example.com.").unwrap(), "api.example.com");
        assert_eq!(check_host("\\052.example.com").unwrap(), "*.example.com");
        for bad in [
            "_bridgekeeper.api.example.com",
            "_acme-challenge.example.com",
            "a._dmarc.example.com",
            "api.*.example.com",
            "-api.example.com",
            "api-.example.com",
            "api example.com",
            "api.exa\nmple.com",
            "a\u{0430}pi.example.com",
            "localhost",
            "",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_host(&format!("{}.example.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn unset_lets_any_namespace_claim_names_but_not_apexes_or_wildcards() {
        let p = HostPolicy::default();
        assert!(p.allows("prod", "shop", "api.example.com", false).is_ok());
        assert!(p.allows("prod", "shop", "example.com", true).is_err());
        assert!(p.allows("prod", "shop", "*.example.com", false).is_err());
    }

    #[test]
    fn namespaces_claim_only_their_suffixes() {
        let p = policy(
            "shop=shop.example.com,payments=*.pay.example.com,prod/platform=@example.com,*=dev.example.com",
        );
        assert!(p.allows("prod", "shop", "shop.example.com", false).is_ok());
        assert!(
            p.allows("prod", "shop", "api.shop.example.com", false)
                .is_ok()
        );
        assert!(p.allows("prod", "shop", "pay.example.com", false).is_err());
        assert!(
            p.allows("prod", "shop", "evilshop.example.com", false)
                .is_err()
        );
        assert!(
            p.allows("prod", "shop", "*.shop.example.com", false)
                .is_err()
        );
        assert!(
            p.allows("prod", "payments", "*.pay.example.com", false)
                .is_ok()
        );
        assert!(p.allows("prod", "platform", "example.com", true).is_ok());
        assert!(p.allows("dev", "platform", "example.com", true).is_err());
        assert!(p.allows("prod", "shop", "example.com", true).is_err());
        assert!(
            p.allows("dev", "anyone", "x.dev.example.com", false)
                .is_ok()
        );
        // A grant of a subtree is not a grant of a zone apex inside it.
        let sub = policy("shop=shop.example.com");
        assert!(
            sub.allows("prod", "shop", "shop.example.com", true)
                .is_err()
        );
    }

    #[test]
    fn a_malformed_entry_is_named() {
        for bad in [
            "shop",
            "Shop=a.example.com",
            "shop=_x.example.com",
            "shop=a.*.com",
            "a/b/c=x.com",
        ] {
            let err = HostPolicy::parse(&[bad.to_owned()]).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }
}
