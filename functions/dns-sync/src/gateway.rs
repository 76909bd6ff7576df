//! Gateway API sources (pure): a route's hostnames, intersected with its parent Gateway
//! listeners' hostnames as the Gateway API defines it, published at the parent Gateway's
//! address — the AWS Load Balancer Controller's ALB or NLB for that Gateway.
//!
//! A route is used only where its parent accepted it (`status.parents[].conditions` `Accepted`
//! `True`) and the Gateway has a hostname address (`status.addresses`); otherwise it is skipped
//! and holds its deletions, like an Ingress without a load balancer yet.
//!
//! A route's parent may also be a ListenerSet (standard since Gateway API v1.5, `XListenerSet`
//! in `gateway.networking.x-k8s.io` before): listeners a team attaches to a shared Gateway,
//! which carries the address. Its listeners count once the Gateway accepted the set.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

use crate::sources::{Defaults, Endpoint, HOSTNAME_ANNOTATION, Skip, endpoints, source_of};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const EXPERIMENTAL_GROUP: &str = "gateway.networking.x-k8s.io";

/// A route kind and the API versions it may be served at, newest first: the first one the API
/// server serves is listed (an object is the same at every version it is served at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteKind {
    pub kind: &'static str,
    pub plural: &'static str,
    pub versions: &'static [&'static str],
}

/// The route kinds of the Gateway API's standard (v1) and experimental channels.
pub const ROUTE_KINDS: [RouteKind; 5] = [
    RouteKind {
        kind: "HTTPRoute",
        plural: "httproutes",
        versions: &["v1", "v1beta1"],
    },
    RouteKind {
        kind: "GRPCRoute",
        plural: "grpcroutes",
        versions: &["v1", "v1alpha2"],
    },
    RouteKind {
        kind: "TLSRoute",
        plural: "tlsroutes",
        versions: &["v1", "v1alpha3", "v1alpha2"],
    },
    RouteKind {
        kind: "TCPRoute",
        plural: "tcproutes",
        versions: &["v1alpha2"],
    },
    RouteKind {
        kind: "UDPRoute",
        plural: "udproutes",
        versions: &["v1alpha2"],
    },
];

/// What holds listeners and is listed with Gateways: (kind, API group, plural, versions).
pub const LISTENER_HOLDERS: [(&str, &str, &str, &[&str]); 3] = [
    ("Gateway", GATEWAY_GROUP, "gateways", &["v1", "v1beta1"]),
    ("ListenerSet", GATEWAY_GROUP, "listenersets", &["v1"]),
    (
        "XListenerSet",
        EXPERIMENTAL_GROUP,
        "xlistenersets",
        &["v1alpha1"],
    ),
];

/// The API path of `plural` at `version` of the Gateway API's `group`, in `namespace` or all.
pub fn path(group: &str, plural: &str, version: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/apis/{group}/{version}/namespaces/{ns}/{plural}"),
        None => format!("/apis/{group}/{version}/{plural}"),
    }
}

/// A route as listed: only what the planner reads (serde skips the rest as it reads).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Route {
    /// Set by the lister: `HTTPRoute`, `TCPRoute`, ...
    #[serde(skip)]
    pub kind: &'static str,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RouteSpec,
    #[serde(default)]
    pub status: RouteStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSpec {
    /// TCPRoute and UDPRoute have none: their hosts are the listeners' (or the annotation's).
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub section_name: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RouteStatus {
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentRef,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

/// A Gateway, or a ListenerSet (`kind`): listeners attached to the Gateway its `parentRef` names,
/// which carries the address.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Gateway {
    /// Set by the lister; `Gateway` unless it is a ListenerSet or XListenerSet.
    #[serde(skip, default = "gateway_kind")]
    pub kind: &'static str,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: GatewaySpec,
    #[serde(default)]
    pub status: GatewayStatus,
}

fn gateway_kind() -> &'static str {
    "Gateway"
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// A ListenerSet's Gateway.
    #[serde(default)]
    pub parent_ref: Option<ParentRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Listener {
    pub name: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GatewayStatus {
    #[serde(default)]
    pub addresses: Vec<GatewayAddress>,
    /// A ListenerSet's: `Accepted` once its Gateway took it.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GatewayAddress {
    #[serde(rename = "type", default)]
    pub type_: Option<String>,
    pub value: String,
}

/// The hostname a route and a listener both accept, as the Gateway API defines it
/// (HTTPRoute `spec.hostnames`): a listener without a hostname takes the route's; a wildcard
/// (`*.example.com`, at least one label in place of `*`) takes the names below it; of two that
/// match, the more specific is the result. `None` when they do not intersect.
pub fn intersect(listener: Option<&str>, route: &str) -> Option<String> {
    let route = route.trim_end_matches('.').to_ascii_lowercase();
    let Some(listener) = listener
        .map(|l| l.trim_end_matches('.').to_ascii_lowercase())
        .filter(|l| !l.is_empty())
    else {
        return Some(route);
    };
    let below = |name: &str, wildcard: &str| {
        wildcard
            .strip_prefix("*.")
            .is_some_and(|parent| name.ends_with(&format!(".{parent}")))
    };
    if listener == route || below(&route, &listener) {
        Some(route)
    } else if below(&listener, &route) {
        Some(listener)
    } else {
        None
    }
}

fn references(status: &ParentRef, wanted: &ParentRef, route_namespace: &str) -> bool {
    let ns = |p: &ParentRef| p.namespace.clone().unwrap_or(route_namespace.to_owned());
    status.name == wanted.name
        && ns(status) == ns(wanted)
        && status.section_name == wanted.section_name
        && status.port == wanted.port
}

/// The listed Gateway or ListenerSet a parent reference names, if it is one of those kinds.
fn holder_kind(p: &ParentRef) -> Option<&'static str> {
    let group = p.group.as_deref().unwrap_or(GATEWAY_GROUP);
    let kind = p.kind.as_deref().unwrap_or("Gateway");
    LISTENER_HOLDERS
        .iter()
        .find(|(k, g, _, _)| *k == kind && *g == group)
        .map(|(k, ..)| *k)
}

fn find<'g>(
    gateways: &'g [Gateway],
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<&'g Gateway> {
    gateways.iter().find(|g| {
        g.kind == kind
            && g.metadata.name.as_deref() == Some(name)
            && g.metadata.namespace.as_deref().unwrap_or("default") == namespace
    })
}

fn accepted(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Accepted" && c.status == "True")
}

/// The listeners a parent reference attaches to and the addresses they answer at, or why the
/// route cannot be published there yet.
fn resolve<'g>(
    kind: &str,
    parent: &ParentRef,
    namespace: &str,
    gateways: &'g [Gateway],
) -> Result<(Vec<&'g Listener>, Vec<String>), String> {
    let ns = parent.namespace.as_deref().unwrap_or(namespace);
    let named = format!("{kind} {ns}/{}", parent.name);
    let holder = find(gateways, kind, ns, &parent.name)
        .ok_or_else(|| format!("{named} was not found (not listed, or outside NAMESPACES)"))?;
    let gateway = match &holder.spec.parent_ref {
        Some(gw) if kind != "Gateway" => {
            if !accepted(&holder.status.conditions) {
                return Err(format!("{named} is not accepted by its Gateway (yet)"));
            }
            let gw_ns = gw.namespace.as_deref().unwrap_or(ns);
            find(gateways, "Gateway", gw_ns, &gw.name).ok_or_else(|| {
                format!(
                    "Gateway {gw_ns}/{} of {named} was not found (not listed, or outside NAMESPACES)",
                    gw.name
                )
            })?
        }
        _ => holder,
    };
    let targets: Vec<String> = gateway
        .status
        .addresses
        .iter()
        .filter(|a| a.type_.as_deref().unwrap_or("Hostname") == "Hostname")
        .map(|a| a.value.clone())
        .collect();
    if targets.is_empty() {
        return Err(format!(
            "Gateway {} has no hostname address in its status yet",
            gateway.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let listeners = holder
        .spec
        .listeners
        .iter()
        .filter(|l| {
            parent.section_name.as_ref().is_none_or(|s| *s == l.name)
                && parent.port.is_none_or(|p| l.port == Some(p))
        })
        .collect();
    Ok((listeners, targets))
}

/// The hosts of every route, each at its parent Gateway's address; a route that cannot be
/// published yet is skipped with why, holding its hosts.
pub fn from_routes(
    cluster: &str,
    routes: &[Route],
    gateways: &[Gateway],
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let mut eps = Vec::new();
    let mut skips = Vec::new();
    for route in routes {
        let (e, s) = from_route(cluster, route, gateways, defaults);
        eps.extend(e);
        skips.extend(s);
    }
    (eps, skips)
}

fn from_route(
    cluster: &str,
    route: &Route,
    gateways: &[Gateway],
    defaults: &Defaults,
) -> (Vec<Endpoint>, Vec<Skip>) {
    let resource = route.kind.to_ascii_lowercase();
    let namespace = route.metadata.namespace.as_deref().unwrap_or("default");
    let annotated = route
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOSTNAME_ANNOTATION))
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let wanted: Vec<&String> = route
        .spec
        .hostnames
        .iter()
        .chain(&annotated)
        .filter(|h| !h.is_empty())
        .collect();
    let skip = |reason: String| Skip {
        source: source_of(cluster, &resource, &route.metadata),
        reason,
        hosts: wanted.iter().map(|h| h.to_ascii_lowercase()).collect(),
    };
    let mut out = (Vec::new(), Vec::new());
    for (parent, kind) in route
        .spec
        .parent_refs
        .iter()
        .filter_map(|p| Some((p, holder_kind(p)?)))
    {
        let ns = parent.namespace.as_deref().unwrap_or(namespace);
        let is_accepted = route
            .status
            .parents
            .iter()
            .any(|s| references(&s.parent_ref, parent, namespace) && accepted(&s.conditions));
        if !is_accepted {
            out.1.push(skip(format!(
                "not accepted by {kind} {ns}/{} (yet)",
                parent.name
            )));
            continue;
        }
        let (listeners, targets) = match resolve(kind, parent, namespace, gateways) {
            Ok(found) => found,
            Err(why) => {
                out.1.push(skip(why));
                continue;
            }
        };
        let mut hosts = BTreeSet::new();
        for l in listeners {
            if wanted.is_empty() {
                hosts.extend(l.hostname.clone());
            }
            hosts.extend(
                wanted
                    .iter()
                    .filter_map(|h| intersect(l.hostname.as_deref(), h)),
            );
        }
        let (e, s) = endpoints(
            cluster,
            &resource,
            &route.metadata,
            hosts.into_iter().collect(),
            targets,
            defaults,
        );
        out.0.extend(e);
        out.1.extend(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sources::RecordKind;

    const ALB: &str = "k8s-shop-gw-0123456789.eu-west-1.elb.amazonaws.com";

    fn defaults() -> Defaults {
        Defaults {
            kind: RecordKind::Alias,
            ttl: 300,
            tls_hosts: true,
        }
    }

    fn gateway(listeners: serde_json::Value, addresses: serde_json::Value) -> Gateway {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "infra"},
            "spec": {"listeners": listeners},
            "status": {"addresses": addresses}
        }))
        .unwrap()
    }

    fn route(kind: &'static str, spec: serde_json::Value, accepted: bool) -> Route {
        let parent = json!({"name": "web", "namespace": "infra"});
        let mut r: Route = serde_json::from_value(json!({
            "metadata": {"name": "api", "namespace": "shop", "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": spec,
            "status": {"parents": [{"parentRef": parent, "controllerName": "gateway.k8s.aws/alb",
                "conditions": [{"type": "Accepted", "status": if accepted { "True" } else { "False" }}]}]}
        }))
        .unwrap();
        r.kind = kind;
        r
    }

    fn hosts(eps: &[Endpoint]) -> Vec<(&str, &str)> {
        eps.iter()
            .map(|e| (e.host.as_str(), e.target.as_str()))
            .collect()
    }

    #[test]
    fn hostnames_intersect_as_the_gateway_api_defines() {
        let cases = [
            (None, "api.example.com", Some("api.example.com")),
            (
                Some("api.example.com"),
                "api.example.com",
                Some("api.example.com"),
            ),
            (
                Some("*.example.com"),
                "api.example.com",
                Some("api.example.com"),
            ),
            (
                Some("*.example.com"),
                "a.b.example.com",
                Some("a.b.example.com"),
            ),
            (Some("*.example.com"), "example.com", None),
            (
                Some("*.example.com"),
                "*.shop.example.com",
                Some("*.shop.example.com"),
            ),
            (
                Some("*.shop.example.com"),
                "*.example.com",
                Some("*.shop.example.com"),
            ),
            (
                Some("api.example.com"),
                "*.example.com",
                Some("api.example.com"),
            ),
            (Some("api.example.com"), "web.example.com", None),
            (Some("*.example.org"), "api.example.com", None),
            (
                Some("API.Example.com."),
                "api.example.com",
                Some("api.example.com"),
            ),
        ];
        for (listener, route, want) in cases {
            assert_eq!(
                intersect(listener, route).as_deref(),
                want,
                "{listener:?} ∩ {route}"
            );
        }
    }

    #[test]
    fn an_accepted_httproute_is_published_at_its_gateways_address() {
        let gw = gateway(
            json!([{"name": "https", "hostname": "*.example.com", "port": 443}]),
            json!([{"type": "Hostname", "value": ALB}]),
        );
        let r = route(
            "HTTPRoute",
            json!({"hostnames": ["api.example.com", "example.com", "other.example.org"],
                   "parentRefs": [{"name": "web", "namespace": "infra"}]}),
            true,
        );
        let (eps, skips) = from_routes("prod", &[r], &[gw], &defaults());
        assert_eq!(hosts(&eps), [("api.example.com", ALB)]);
        assert_eq!(eps[0].source, "prod/httproute/shop/api");
        assert_eq!(
            (eps[0].namespace.as_str(), eps[0].created),
            ("shop", Some(1_767_323_045))
        );
        assert!(skips.is_empty(), "{skips:?}");
    }

    fn listener_set(kind: &'static str, accepted: bool) -> Gateway {
        let mut ls: Gateway = serde_json::from_value(json!({
            "metadata": {"name": "shop-listeners", "namespace": "shop"},
            "spec": {"parentRef": {"name": "web", "namespace": "infra"},
                     "listeners": [{"name": "shop", "hostname": "*.shop.example.com", "port": 443}]},
            "status": {"conditions": [{"type": "Accepted", "status": if accepted { "True" } else { "False" }}]}
        }))
        .unwrap();
        ls.kind = kind;
        ls
    }

    fn attached_to_listener_set(group: &str, kind: &str) -> Route {
        let parent = json!({"group": group, "kind": kind, "name": "shop-listeners"});
        serde_json::from_value(json!({
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"hostnames": ["api.shop.example.com", "api.example.org"], "parentRefs": [parent]},
            "status": {"parents": [{"parentRef": parent, "conditions": [{"type": "Accepted", "status": "True"}]}]}
        }))
        .map(|r: Route| Route { kind: "HTTPRoute", ..r })
        .unwrap()
    }

    #[test]
    fn a_route_on_a_listener_set_is_published_at_its_gateways_address() {
        let gw = gateway(json!([]), json!([{"type": "Hostname", "value": ALB}]));
        for (group, kind) in [
            ("gateway.networking.k8s.io", "ListenerSet"),
            ("gateway.networking.x-k8s.io", "XListenerSet"),
        ] {
            let sets = [gw.clone(), listener_set(kind, true)];
            let r = attached_to_listener_set(group, kind);
            let (eps, skips) = from_routes("prod", &[r], &sets, &defaults());
            assert_eq!(hosts(&eps), [("api.shop.example.com", ALB)], "{kind}");
            assert!(skips.is_empty(), "{skips:?}");
        }
    }

    #[test]
    fn a_listener_set_its_gateway_has_not_accepted_holds_its_routes() {
        let gw = gateway(json!([]), json!([{"type": "Hostname", "value": ALB}]));
        let r = attached_to_listener_set("gateway.networking.k8s.io", "ListenerSet");
        let (eps, skips) = from_routes(
            "prod",
            &[r],
            &[gw, listener_set("ListenerSet", false)],
            &defaults(),
        );
        assert!(eps.is_empty());
        assert!(
            skips[0].reason.contains("not accepted by its Gateway"),
            "{skips:?}"
        );
        assert!(skips[0].hosts.contains(&"api.shop.example.com".to_owned()));
        // A ListenerSet parentRef in the wrong group names nothing dns-sync knows.
        let stray = attached_to_listener_set("example.com", "ListenerSet");
        assert_eq!(
            from_routes("prod", &[stray], &[], &defaults()),
            (vec![], vec![])
        );
    }

    #[test]
    fn a_route_without_hostnames_takes_its_listeners_and_section_name_picks_one() {
        let gw = gateway(
            json!([{"name": "mqtt", "hostname": "mqtt.example.com", "port": 8883},
                   {"name": "amqp", "hostname": "amqp.example.com", "port": 5671}]),
            json!([{"value": ALB}]),
        );
        let mut r = route(
            "TCPRoute",
            json!({"parentRefs": [{"name": "web", "namespace": "infra", "sectionName": "mqtt"}]}),
            true,
        );
        r.status.parents[0].parent_ref.section_name = Some("mqtt".into());
        let (eps, _) = from_routes("prod", &[r], std::slice::from_ref(&gw), &defaults());
        assert_eq!(hosts(&eps), [("mqtt.example.com", ALB)]);
        assert_eq!(eps[0].source, "prod/tcproute/shop/api");
        // A status for another listener is not this parent's acceptance.
        let mut other = route(
            "TCPRoute",
            json!({"parentRefs": [{"name": "web", "namespace": "infra", "sectionName": "amqp"}]}),
            true,
        );
        other.status.parents[0].parent_ref.section_name = Some("mqtt".into());
        let (eps, skips) = from_routes("prod", &[other], &[gw], &defaults());
        assert!(eps.is_empty());
        assert!(
            skips[0]
                .reason
                .contains("not accepted by Gateway infra/web")
        );
    }

    #[test]
    fn unaccepted_unaddressed_or_unknown_parents_skip_and_hold_their_hosts() {
        let spec = json!({"hostnames": ["api.example.com"],
                          "parentRefs": [{"name": "web", "namespace": "infra"}]});
        let listeners = json!([{"name": "http", "port": 80}]);
        let addressed = gateway(
            listeners.clone(),
            json!([{"type": "Hostname", "value": ALB}]),
        );
        let cases = [
            (
                route("HTTPRoute", spec.clone(), false),
                vec![addressed.clone()],
                "not accepted",
            ),
            (
                route("HTTPRoute", spec.clone(), true),
                vec![gateway(listeners.clone(), json!([]))],
                "no hostname address",
            ),
            (
                route("HTTPRoute", spec.clone(), true),
                vec![gateway(
                    listeners,
                    json!([{"type": "IPAddress", "value": "10.0.0.1"}]),
                )],
                "no hostname address",
            ),
            (route("HTTPRoute", spec, true), vec![], "was not found"),
        ];
        for (r, gws, why) in cases {
            let (eps, skips) = from_routes("prod", &[r], &gws, &defaults());
            assert!(eps.is_empty(), "{why}");
            assert!(skips[0].reason.contains(why), "{skips:?}");
            assert_eq!(skips[0].hosts, ["api.example.com"]);
            assert_eq!(skips[0].source, "prod/httproute/shop/api");
        }
    }

    #[test]
    fn the_hostname_annotation_names_hosts_for_routes_without_hostnames() {
        let gw = gateway(
            json!([{"name": "udp", "port": 53}]),
            json!([{"type": "Hostname", "value": ALB}]),
        );
        let mut r = route(
            "UDPRoute",
            json!({"parentRefs": [{"name": "web", "namespace": "infra"}]}),
            true,
        );
        r.metadata.annotations =
            Some([(HOSTNAME_ANNOTATION.to_owned(), "dns.example.com".to_owned())].into());
        let (eps, _) = from_routes("prod", &[r], &[gw], &defaults());
        assert_eq!(hosts(&eps), [("dns.example.com", ALB)]);
    }

    #[test]
    fn parents_that_are_not_gateways_are_ignored() {
        let gw = gateway(json!([{"name": "http"}]), json!([{"value": ALB}]));
        let r = route(
            "HTTPRoute",
            json!({"hostnames": ["api.example.com"],
                   "parentRefs": [{"name": "web", "namespace": "infra", "kind": "Service", "group": ""}]}),
            true,
        );
        assert_eq!(
            from_routes("prod", &[r], &[gw], &defaults()),
            (vec![], vec![])
        );
    }
}
