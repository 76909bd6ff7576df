//! Pure: what each Ingress and LoadBalancer Service asks for — its hosts, its load balancer, the
//! record kind and TTL its annotations choose — or why it was skipped.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::policy::check_host;
use crate::records::normalize;

pub const OPT_ANNOTATION: &str = "bridgekeeper.io/dns";
pub const TYPE_ANNOTATION: &str = "bridgekeeper.io/record-type";
pub const TTL_ANNOTATION: &str = "bridgekeeper.io/ttl";
pub const HOSTNAME_ANNOTATION: &str = "bridgekeeper.io/hostname";
/// The AWS Load Balancer Controller's own settings: a dualstack load balancer also answers AAAA,
/// which its hostname does not show, so these spare a DescribeLoadBalancers call.
pub const ALB_IP_TYPE_ANNOTATION: &str = "alb.ingress.kubernetes.io/ip-address-type";
pub const NLB_IP_TYPE_ANNOTATION: &str =
    "service.beta.kubernetes.io/aws-load-balancer-ip-address-type";
/// The ip-address-type (annotation value and ELBv2's `IpAddressType`) of a load balancer with
/// no public IPv4 address.
pub const IPV6_ONLY: &str = "dualstack-without-public-ipv4";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Alias A (and AAAA for a dualstack load balancer) to an ELB.
    Alias,
    Cname,
}

/// Defaults for records; annotations override them per Ingress or Service.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub kind: RecordKind,
    pub ttl: i64,
    /// `INGRESS_TLS_HOSTS`: an Ingress's `spec.tls[].hosts` are its hosts too (external-dns
    /// publishes them by default; `false` ignores them, as its `--ignore-ingress-tls-spec`).
    pub tls_hosts: bool,
}

/// One host that should point at one load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub target: String,
    /// `<cluster>/ingress/<namespace>/<name>` or `<cluster>/service/...`.
    pub source: String,
    pub cluster: String,
    pub namespace: String,
    /// The source's `creationTimestamp` (seconds since the epoch): among new claimants of one
    /// host the oldest wins. Set by the API server, so a tenant cannot choose it.
    pub created: Option<i64>,
    pub kind: RecordKind,
    pub ttl: i64,
    /// The source says its load balancer is dualstack (IPv4 and IPv6).
    pub dualstack: bool,
    /// `dualstack-without-public-ipv4`: the load balancer answers IPv6 only ("to support IPv6
    /// addresses only", ELB's IP address types), so it gets an AAAA alias and no A.
    pub ipv6_only: bool,
}

/// A source that asked for records this run could not plan. Its hosts keep what they have: in
/// `sync` mode nothing it may own is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub source: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

struct Settings {
    kind: RecordKind,
    ttl: i64,
    dualstack: bool,
    ipv6_only: bool,
}

fn settings(
    annotations: Option<&BTreeMap<String, String>>,
    defaults: &Defaults,
) -> Result<Option<Settings>, String> {
    let get = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if get(OPT_ANNOTATION).as_deref() == Some("false") {
        return Ok(None);
    }
    let kind = match get(TYPE_ANNOTATION).as_deref() {
        None => defaults.kind,
        Some("alias") | Some("a") => RecordKind::Alias,
        Some("cname") => RecordKind::Cname,
        Some(other) => {
            return Err(format!(
                "{TYPE_ANNOTATION}: {other:?} is not alias or cname"
            ));
        }
    };
    let ttl = match get(TTL_ANNOTATION) {
        None => defaults.ttl,
        Some(v) => match v.parse::<i64>() {
            // Route53's TTL range (ResourceRecordSet.TTL, 0 to 2147483647).
            Ok(t) if (0..=2_147_483_647).contains(&t) => t,
            _ => {
                return Err(format!(
                    "{TTL_ANNOTATION}: {v:?} is not a number of seconds"
                ));
            }
        },
    };
    let address_type = |wanted: &dyn Fn(&str) -> bool| {
        [ALB_IP_TYPE_ANNOTATION, NLB_IP_TYPE_ANNOTATION]
            .iter()
            .any(|k| get(k).is_some_and(|v| wanted(&v)))
    };
    Ok(Some(Settings {
        kind,
        ttl,
        dualstack: address_type(&|v| v.starts_with("dualstack")),
        ipv6_only: address_type(&|v| v == IPV6_ONLY),
    }))
}

/// `<cluster>/<resource>/<namespace>/<name>`: how a source is named in reports and in its
/// hosts' ownership records.
pub(crate) fn source_of(cluster: &str, resource: &str, meta: &ObjectMeta) -> String {
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    format!(
        "{cluster}/{resource}/{namespace}/{}",
        meta.name.as_deref().unwrap_or("")
    )
}

/// `resource` is `ingress`, `service` or a route kind (`httproute`, ...).
pub(crate) fn endpoints(
    cluster: &str,
    resource: &str,
    meta: &ObjectMeta,
    hosts: Vec<String>,
    targets: Vec<String>,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    let source = source_of(cluster, resource, meta);
    let mut skipped = Vec::new();
    let mut valid = BTreeSet::new();
    for h in hosts {
        match check_host(&h) {
            Ok(host) => {
                valid.insert(host);
            }
            Err(reason) => skipped.push(Skip {
                source: source.clone(),
                reason,
                hosts: vec![],
            }),
        }
    }
    let skip = |reason: String| Skip {
        source: source.clone(),
        reason,
        hosts: valid.iter().cloned().collect(),
    };
    let s = match settings(meta.annotations.as_ref(), defaults) {
        Ok(Some(s)) => s,
        Ok(None) => return (vec![], vec![]),
        Err(reason) => return (vec![], vec![skip(reason)]),
    };
    if valid.is_empty() {
        return (vec![], skipped);
    }
    // A CNAME takes one target; the first in sorted order keeps the choice stable between runs.
    let Some(target) = targets.into_iter().filter_map(|t| normalize(&t)).min() else {
        skipped.push(skip("no load balancer hostname in its status yet".into()));
        return (vec![], skipped);
    };
    let out = valid
        .into_iter()
        .map(|host| Endpoint {
            host,
            target: target.clone(),
            source: source.clone(),
            cluster: cluster.to_owned(),
            namespace: namespace.to_owned(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
            kind: s.kind,
            ttl: s.ttl,
            dualstack: s.dualstack,
            ipv6_only: s.ipv6_only,
        })
        .collect();
    (out, skipped)
}

/// The hostnames in a load balancer status (Ingress and Service statuses are different types).
fn hostnames<T>(ingress: Option<&Vec<T>>, hostname: fn(&T) -> &Option<String>) -> Vec<String> {
    ingress
        .into_iter()
        .flatten()
        .filter_map(|i| hostname(i).clone())
        .collect()
}

pub fn from_ingress(
    cluster: &str,
    ing: &Ingress,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let rules = ing
        .spec
        .iter()
        .flat_map(|s| s.rules.iter().flatten())
        .filter_map(|r| r.host.clone());
    let tls = ing
        .spec
        .iter()
        .filter(|_| defaults.tls_hosts)
        .flat_map(|s| s.tls.iter().flatten())
        .flat_map(|t| t.hosts.iter().flatten().cloned());
    let hosts: BTreeSet<String> = rules.chain(tls).collect();
    let status = ing.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    let targets = hostnames(status.and_then(|lb| lb.ingress.as_ref()), |i| &i.hostname);
    endpoints(
        cluster,
        "ingress",
        &ing.metadata,
        hosts.into_iter().collect(),
        targets,
        defaults,
    )
}

/// What a listing keeps of annotations: dns-sync's own and the load balancer controller's
/// address type.
fn read_annotations(m: &ObjectMeta) -> Option<BTreeMap<String, String>> {
    m.annotations.as_ref().map(|a| {
        a.iter()
            .filter(|(k, _)| {
                k.starts_with("bridgekeeper.io/")
                    || *k == ALB_IP_TYPE_ANNOTATION
                    || *k == NLB_IP_TYPE_ANNOTATION
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

fn read_meta(m: ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        annotations: read_annotations(&m),
        name: m.name,
        namespace: m.namespace,
        creation_timestamp: m.creation_timestamp,
        ..ObjectMeta::default()
    }
}

/// An Ingress as a listing keeps it: its metadata that matters, its rules' and TLS hosts, its
/// load balancer's hostnames. Thousands of Ingresses then cost what the planner reads.
pub fn slim_ingress(i: Ingress) -> Option<Ingress> {
    use k8s_openapi::api::networking::v1::{IngressRule, IngressSpec, IngressTLS};
    let spec = i.spec.map(|s| IngressSpec {
        tls: s.tls.map(|tls| {
            tls.into_iter()
                .map(|t| IngressTLS {
                    hosts: t.hosts,
                    secret_name: None,
                })
                .collect()
        }),
        rules: s.rules.map(|rules| {
            rules
                .into_iter()
                .map(|r| IngressRule {
                    host: r.host,
                    http: None,
                })
                .collect()
        }),
        ..IngressSpec::default()
    });
    Some(Ingress {
        metadata: read_meta(i.metadata),
        spec,
        status: i.status,
    })
}

/// A Service as a listing keeps it: only one of type LoadBalancer that names hosts; every other
/// Service (most of a cluster's) is dropped as it is read.
pub fn slim_service(s: Service) -> Option<Service> {
    use k8s_openapi::api::core::v1::ServiceSpec;
    let is_lb = s.spec.as_ref().and_then(|x| x.type_.as_deref()) == Some("LoadBalancer");
    let named = s
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(HOSTNAME_ANNOTATION));
    (is_lb && named).then(|| Service {
        metadata: read_meta(s.metadata),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ..ServiceSpec::default()
        }),
        status: s.status,
    })
}

/// A Service of type LoadBalancer names its hosts in `bridgekeeper.io/hostname` (comma-separated).
pub fn from_service(
    cluster: &str,
    svc: &Service,
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let meta = &svc.metadata;
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    let Some(hosts) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOSTNAME_ANNOTATION))
        .filter(|_| is_lb)
    else {
        return (vec![], vec![]);
    };
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    let status = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    let targets = hostnames(status.and_then(|lb| lb.ingress.as_ref()), |i| &i.hostname);
    endpoints(cluster, "service", meta, hosts, targets, defaults)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LB: &str = "k8s-shop-api-1854330541.eu-west-1.elb.amazonaws.com";

    #[test]
    fn ingress_annotations_choose_type_ttl_or_opt_out() {
        let ing = |annotations: serde_json::Value| -> Ingress {
            serde_json::from_value(json!({
                "metadata": {"name": "api", "namespace": "shop", "annotations": annotations},
                "spec": {"rules": [{"host": "API.Example.com"}, {"host": "example.com"}, {"host": "api.example.com"}]},
                "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
            }))
            .unwrap()
        };
        let defaults = Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
            tls_hosts: true,
        };
        let (eps, skips) = from_ingress("prod", &ing(json!({})), &defaults);
        let hosts: Vec<_> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["api.example.com", "example.com"]);
        assert!(skips.is_empty());
        assert_eq!(eps[0].source, "prod/ingress/shop/api");
        let (eps, _) = from_ingress(
            "prod",
            &ing(json!({TYPE_ANNOTATION: "cname", TTL_ANNOTATION: "60"})),
            &defaults,
        );
        assert_eq!((eps[0].kind, eps[0].ttl), (RecordKind::Cname, 60));
        assert!(
            from_ingress("prod", &ing(json!({OPT_ANNOTATION: "false"})), &defaults)
                .0
                .is_empty()
        );
        let (eps, skips) = from_ingress("prod", &ing(json!({TTL_ANNOTATION: "soon"})), &defaults);
        assert!(eps.is_empty() && skips[0].reason.contains("bridgekeeper.io/ttl"));
    }

    #[test]
    fn a_load_balancer_service_with_a_hostname_annotation_is_a_source() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "mqtt", "namespace": "iot", "annotations": {HOSTNAME_ANNOTATION: "mqtt.example.com, broker.example.com"}},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
        }))
        .unwrap();
        let (eps, _) = from_service(
            "prod",
            &svc,
            &Defaults {
                kind: RecordKind::Alias,
                ttl: 300,
                tls_hosts: true,
            },
        );
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].source, "prod/service/iot/mqtt");
        let pending: Ingress = serde_json::from_value(
            json!({"metadata": {"name": "new"}, "spec": {"rules": [{"host": "new.example.com"}]}}),
        )
        .unwrap();
        let (eps, skips) = from_ingress(
            "prod",
            &pending,
            &Defaults {
                kind: RecordKind::Alias,
                ttl: 300,
                tls_hosts: true,
            },
        );
        assert!(eps.is_empty());
        assert!(skips[0].reason.contains("no load balancer hostname"));
    }

    /// The review's freeze: a Service naming `_bridgekeeper.<victim>` made dns-sync write at
    /// the victim's ownership name, and the victim's host was "foreign" from then on.
    #[test]
    fn a_hostname_in_the_underscore_namespace_or_not_a_hostname_is_skipped() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "squat", "namespace": "tenant", "creationTimestamp": "2026-01-02T03:04:05Z",
                "annotations": {HOSTNAME_ANNOTATION: "_bridgekeeper.api.example.com,x`y.example.com,ok.example.com"}},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
        }))
        .unwrap();
        let defaults = Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
            tls_hosts: true,
        };
        let (eps, skips) = from_service("prod", &svc, &defaults);
        let hosts: Vec<&str> = eps.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["ok.example.com"]);
        assert_eq!(
            (eps[0].namespace.as_str(), eps[0].created),
            ("tenant", Some(1_767_323_045))
        );
        assert_eq!(skips.len(), 2, "{skips:?}");
        assert!(skips[0].reason.contains("starts with _"), "{skips:?}");
        assert!(skips.iter().all(|s| s.hosts.is_empty()));
    }

    /// What a listing keeps of an Ingress or Service gives the planner the same endpoints, and
    /// a Service that is not a LoadBalancer naming hosts is not kept at all.
    #[test]
    fn a_slim_listing_gives_the_same_endpoints() {
        let defaults = Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
            tls_hosts: true,
        };
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "api", "namespace": "shop", "creationTimestamp": "2026-01-02T03:04:05Z",
                "annotations": {TTL_ANNOTATION: "60", ALB_IP_TYPE_ANNOTATION: "dualstack", "kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"rules": [{"host": "api.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]},
            "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
        }))
        .unwrap();
        let slim = slim_ingress(ing.clone()).unwrap();
        assert_eq!(
            from_ingress("prod", &slim, &defaults),
            from_ingress("prod", &ing, &defaults)
        );
        assert!(slim.metadata.managed_fields.is_none());
        let svc = |type_: &str, annotated: bool| -> Service {
            serde_json::from_value(json!({
                "metadata": {"name": "mqtt", "namespace": "iot",
                    "annotations": if annotated { json!({HOSTNAME_ANNOTATION: "mqtt.example.com"}) } else { json!({}) }},
                "spec": {"type": type_, "ports": [{"port": 1883}]},
                "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
            }))
            .unwrap()
        };
        let lb = svc("LoadBalancer", true);
        assert_eq!(
            from_service("prod", &slim_service(lb.clone()).unwrap(), &defaults),
            from_service("prod", &lb, &defaults)
        );
        assert!(slim_service(svc("ClusterIP", true)).is_none());
        assert!(slim_service(svc("LoadBalancer", false)).is_none());
    }

    #[test]
    fn an_ingress_publishes_its_tls_hosts_unless_told_not_to() {
        let ing: Ingress = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "tls": [{"hosts": ["secure.example.com", "api.example.com"], "secretName": "web-tls"}],
                "rules": [{"host": "api.example.com"}]
            },
            "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
        }))
        .unwrap();
        let mut defaults = Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
            tls_hosts: true,
        };
        let hosts = |d: &Defaults| -> Vec<String> {
            from_ingress("prod", &ing, d)
                .0
                .into_iter()
                .map(|e| e.host)
                .collect()
        };
        assert_eq!(hosts(&defaults), ["api.example.com", "secure.example.com"]);
        // The listing keeps them (and drops the secret's name).
        let slim = slim_ingress(ing.clone()).unwrap();
        assert_eq!(
            from_ingress("prod", &slim, &defaults),
            from_ingress("prod", &ing, &defaults)
        );
        assert!(slim.spec.unwrap().tls.unwrap()[0].secret_name.is_none());
        defaults.tls_hosts = false;
        assert_eq!(hosts(&defaults), ["api.example.com"]);
    }

    #[test]
    fn the_controllers_ip_address_type_says_dualstack_or_ipv6_only() {
        let ing = |value: &str| -> Ingress {
            serde_json::from_value(json!({
                "metadata": {"name": "v6", "namespace": "shop", "annotations": {ALB_IP_TYPE_ANNOTATION: value}},
                "spec": {"rules": [{"host": "v6.example.com"}]},
                "status": {"loadBalancer": {"ingress": [{"hostname": LB}]}}
            }))
            .unwrap()
        };
        let defaults = Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
            tls_hosts: true,
        };
        let read = |value: &str| {
            let e = &from_ingress("prod", &ing(value), &defaults).0[0];
            (e.dualstack, e.ipv6_only)
        };
        assert_eq!(read("ipv4"), (false, false));
        assert_eq!(read("dualstack"), (true, false));
        assert_eq!(read(IPV6_ONLY), (true, true));
    }
}
