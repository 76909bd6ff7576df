//! Trigger in; desired hosts from the clusters (read concurrently, each within its deadline), a
//! plan per zone, the safety valve, the batches applied host by host where Route53 refuses one;
//! report out. The only place that knows the event shapes.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use bridgekeeper::Error;
use bridgekeeper::cluster::in_namespaces;
use bridgekeeper::events::{Envelope, EventBridgeEvent, is_schedule};
use bridgekeeper::idempotency::Remember;
use bridgekeeper::metrics::Metrics;
use bridgekeeper::notify::Notifier;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::Dns;
use crate::config::Config;
use crate::domain::Holds;
use crate::gateway;
use crate::kube::Sources;
use crate::report::{self, ClusterError, Response, State, ZoneReport};
use crate::sources::{Endpoint, Skip, from_ingress, from_service};
use crate::zone_run::{self, Clock, Wanted};

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct CloudTrailCall {
    event_name: String,
}

/// A schedule, a manual run (`source: bridgekeeper`, same shape), or a new load balancer.
fn check_trigger(event: &serde_json::Value) -> Result<(), Error> {
    if is_schedule(event)? {
        return Ok(());
    }
    let envelope = Envelope::of(event)?;
    match envelope.kind() {
        ("aws.elasticloadbalancing", "AWS API Call via CloudTrail") => {
            let call: EventBridgeEvent<CloudTrailCall> =
                EventBridgeEvent::<CloudTrailCall>::deserialize(event).map_err(|e| {
                    Error::invalid_event(format!("malformed CloudTrail event: {e}"))
                })?;
            match call.detail.event_name.as_str() {
                "CreateLoadBalancer" => Ok(()),
                other => Err(Error::invalid_event(format!(
                    "ELB API call {other} does not trigger a sync"
                ))),
            }
        }
        _ => Err(envelope.not_handled(
            "a Scheduled Event (aws.events, or bridgekeeper for a manual run) or a CloudTrail \
             CreateLoadBalancer call",
        )),
    }
}

/// Time kept back from the clusters for Route53: listing, planning and applying every zone.
const ROUTE53_RESERVE: Duration = Duration::from_secs(20);

/// What one cluster asks for, or why it could not be read.
struct ClusterRead {
    cluster: String,
    endpoints: Vec<Endpoint>,
    skipped: Vec<Skip>,
    error: Option<String>,
}

/// One namespace's sources (or all namespaces').
struct Listed {
    ingresses: Vec<Ingress>,
    services: Vec<Service>,
    routes: Vec<gateway::Route>,
    gateways: Vec<gateway::Gateway>,
    gateway_api_error: Option<String>,
}

async fn read_cluster<S: Sources>(cluster: &str, config: &Config, sources: &S) -> ClusterRead {
    let mut read = ClusterRead {
        cluster: cluster.to_owned(),
        endpoints: vec![],
        skipped: vec![],
        error: None,
    };
    let (listed, done) = in_namespaces(&config.namespaces, |ns| async move {
        let ingresses = sources.ingresses(cluster, ns).await?;
        let services = sources.services(cluster, ns).await?;
        // Gateway API sources that cannot be read (a cluster whose RBAC predates them answers
        // 403) cost the cluster its deletions, not its Ingresses' records.
        let gateway_api = async {
            Ok::<_, bridgekeeper::cluster::ClusterError>((
                sources.routes(cluster, ns).await?,
                sources.gateways(cluster, ns).await?,
            ))
        };
        let (routes, gateways, gateway_api_error) = match gateway_api.await {
            Ok((r, g)) => (r, g, None),
            Err(e) => (vec![], vec![], Some(e.to_string())),
        };
        let listed = Listed {
            ingresses,
            services,
            routes,
            gateways,
            gateway_api_error,
        };
        Ok::<_, bridgekeeper::cluster::ClusterError>(vec![listed])
    })
    .await;
    let (mut routes, mut gateways, mut gateway_api_error) = (Vec::new(), Vec::new(), None);
    for l in listed {
        let from_ing = l
            .ingresses
            .iter()
            .map(|i| from_ingress(cluster, i, &config.defaults));
        let from_svc = l
            .services
            .iter()
            .map(|s| from_service(cluster, s, &config.defaults));
        for (eps, skips) in from_ing.chain(from_svc) {
            read.endpoints.extend(eps);
            read.skipped.extend(skips);
        }
        routes.extend(l.routes);
        gateways.extend(l.gateways);
        gateway_api_error = gateway_api_error.or(l.gateway_api_error);
    }
    // After every namespace: a route's Gateway is often in another (an infra namespace).
    let (eps, skips) = gateway::from_routes(cluster, &routes, &gateways, &config.defaults);
    read.endpoints.extend(eps);
    read.skipped.extend(skips);
    read.error = done
        .err()
        .map(|e| e.to_string())
        .or(gateway_api_error.map(|e| {
            format!(
                "Gateway API routes could not be read ({e}); apply deploy/rbac/dns-sync.yaml again"
            )
        }));
    read
}

/// Every cluster at once (bounded), each cut off at its deadline: an unreachable private
/// endpoint costs its own hosts' deletions, never the reachable clusters' records.
async fn read_clusters<S: Sources>(
    config: &Config,
    sources: &S,
    deadline: SystemTime,
) -> Vec<ClusterRead> {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let budget = config
        .cluster_timeout
        .min(left.saturating_sub(ROUTE53_RESERVE));
    let until = tokio::time::Instant::now() + budget;
    futures::stream::iter(config.clusters.iter().map(|(cluster, _)| async move {
        match tokio::time::timeout_at(until, read_cluster(cluster, config, sources)).await {
            Ok(read) => read,
            Err(_) => ClusterRead {
                cluster: cluster.clone(),
                endpoints: vec![],
                skipped: vec![],
                error: Some(format!(
                    "no answer within {} s (CLUSTER_TIMEOUT_SECONDS, or what the invocation had left)",
                    budget.as_secs()
                )),
            },
        }
    }))
    .buffered(config.cluster_concurrency)
    .collect()
    .await
}

/// What the clusters ask for: every endpoint (from the clusters that could be read, and what
/// could be read of the others), the clusters read whole, and the holds of skipped sources.
async fn endpoints<S: Sources>(
    config: &Config,
    sources: &S,
    deadline: SystemTime,
    response: &mut Response,
) -> (Vec<Endpoint>, BTreeSet<String>, Holds) {
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut complete = BTreeSet::new();
    for read in read_clusters(config, sources, deadline).await {
        match read.error {
            None => {
                complete.insert(read.cluster);
            }
            Some(error) => {
                warn!(cluster = %read.cluster, error = %error, "cluster failed");
                response.cluster_errors.push(ClusterError {
                    cluster: read.cluster,
                    error,
                });
            }
        }
        // What could be read is kept up to date even from a failed cluster; only deletions wait.
        endpoints.extend(read.endpoints);
        response.skipped.extend(read.skipped);
    }
    // Sources the clusters could not plan hold their deletions; a host outside DOMAIN_FILTER is
    // filtering, not a broken source, and holds nothing.
    let holds = Holds::from_skips(&response.skipped);
    endpoints.sort_by(|a, b| (&a.host, &a.source).cmp(&(&b.host, &b.source)));
    let (endpoints, outside): (Vec<Endpoint>, Vec<Endpoint>) = endpoints
        .into_iter()
        .partition(|e| config.zones.allows_host(&e.host));
    response.skipped.extend(outside.into_iter().map(|e| Skip {
        reason: format!("{} is outside DOMAIN_FILTER", e.host),
        source: e.source,
        hosts: vec![],
    }));
    (endpoints, complete, holds)
}

/// One run, as external-dns's `RunOnce`: the endpoints the clusters ask for, the zones that
/// hold them, a plan per zone, the changes applied, and what happened reported.
pub async fn handle<S: Sources, D: Dns, N: Notifier, M: Remember>(
    event: serde_json::Value,
    deadline: SystemTime,
    config: &Config,
    sources: &S,
    dns: &D,
    notifier: &N,
    state: &State<'_, M>,
) -> Result<Response, Error> {
    let envelope = Envelope::of(&event)?;
    let origin = config.admitted.check(envelope.account())?;
    check_trigger(&event)?;
    let mut response = Response {
        dry_run: config.dry_run,
        ..Response::default()
    };

    let (endpoints, complete, holds) = endpoints(config, sources, deadline, &mut response).await;
    // A manual run reads every zone: the way to make a run look at what the ledger spares.
    let clock = Clock::new(deadline, envelope.source() != "bridgekeeper");
    let wanted = Wanted {
        endpoints,
        complete,
        holds,
    };
    let retry = zone_run::run(wanted, config, dns, state.store(), &clock, &mut response).await?;
    response.zones.retain(|z| {
        z.error.is_some()
            || z.batches > 0
            || z.unchanged > 0
            || !z.changes.is_empty()
            || !z.conflicts.is_empty()
            || !z.held.is_empty()
            || !z.rejected.is_empty()
    });

    emit_metrics(&response);
    let outcome = report::notification(&response, &config.environment, state).await;
    if let Some(n) = outcome.notification {
        response.notification = Some(notifier.notify(&origin.stamp(n)).await?);
    }
    if let Some(problems) = outcome.remember {
        state.save(problems).await;
    }
    // Reported first: a retry finds the applied changes already there and reports nothing twice.
    if retry {
        return Err(Error::Transient(
            "a zone or account could not be read or written for a passing reason; what was done is reported, the rest is retried"
                .into(),
        ));
    }
    info!(
        zones = response.zones.len(),
        changed = response
            .zones
            .iter()
            .map(ZoneReport::changed)
            .sum::<usize>(),
        conflicts = response
            .zones
            .iter()
            .map(|z| z.conflicts.len())
            .sum::<usize>(),
        dry_run = config.dry_run,
        "sync done"
    );
    Ok(response)
}

fn emit_metrics(response: &Response) {
    let sum = |f: fn(&ZoneReport) -> usize| response.zones.iter().map(f).sum::<usize>() as u64;
    let applied = |n: u64| if response.dry_run { 0 } else { n };
    let mut metrics = Metrics::new(crate::FUNCTION);
    metrics
        .count("RecordsCreated", applied(sum(|z| z.created.len())))
        .count("RecordsUpdated", applied(sum(|z| z.updated.len())))
        .count("RecordsDeleted", applied(sum(|z| z.deleted.len())))
        .count("RecordsRejected", sum(|z| z.rejected.len()))
        .count("DeletionsHeld", sum(|z| z.held.len()))
        .count("Conflicts", sum(|z| z.conflicts.len()))
        .count("HostsWithoutZone", response.hosts_without_zone.len() as u64)
        .count("ChangeBatches", applied(sum(|z| z.batches)))
        .count("ClustersFailed", response.cluster_errors.len() as u64);
    metrics.flush();
}

#[cfg(test)]
mod tests {

    use aws_sdk_route53::Client;
    use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsInput;
    use aws_sdk_route53::operation::list_hosted_zones::ListHostedZonesOutput;
    use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
    use aws_sdk_route53::types::HostedZone;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use bridgekeeper::Class;
    use bridgekeeper::config::Env;
    use bridgekeeper::idempotency::testing::Memory;
    use bridgekeeper::notify::testing::Recorder;

    use super::*;
    use crate::aws::AwsDns;
    use crate::fakes::*;
    use crate::records::RecordSet;

    const CLASSIC: &str = "default-1854330541.ap-northeast-1.elb.amazonaws.com";

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("CLUSTERS", "prod=prod-eks,dr=dr-eks"),
            ("OWNER_ID", "bk"),
            ("ENVIRONMENT", "prod"),
            ("POLICY", "sync"),
            ("HOST_POLICY", "*=example.com,shop=@example.com"),
        ];
        vars.extend_from_slice(extra);
        Config::from_env(&Env::from_pairs(vars)).unwrap()
    }

    fn owned(host: &str, cluster: &str) -> Vec<RecordSet> {
        let ep = Endpoint {
            host: host.into(),
            target: CLASSIC.into(),
            source: format!("{cluster}/ingress/shop/old"),
            cluster: cluster.into(),
            namespace: "shop".into(),
            created: None,
            kind: crate::sources::RecordKind::Alias,
            ttl: 300,
            dualstack: false,
            ipv6_only: false,
        };
        vec![
            RecordSet {
                name: host.into(),
                rtype: "A".into(),
                alias: Some(crate::records::AliasTarget {
                    zone_id: "Z14GRHDCWA56QT".into(),
                    dns_name: CLASSIC.into(),
                    evaluate_health: false,
                }),
                ..RecordSet::default()
            },
            RecordSet {
                name: crate::records::owner_name(host),
                rtype: "TXT".into(),
                ttl: Some(300),
                values: vec![crate::records::owner_value("bk", &ep.cluster, &ep.source)],
                ..RecordSet::default()
            },
        ]
    }

    async fn run<S: Sources, D: Dns>(
        config: &Config,
        sources: &S,
        dns: &D,
        notifier: &Recorder,
        state: &State<'_, Memory>,
    ) -> Response {
        let deadline = SystemTime::now() + Duration::from_secs(120);
        handle(schedule(), deadline, config, sources, dns, notifier, state)
            .await
            .unwrap()
    }

    /// A CloudTrail-shaped CreateLoadBalancer event from an account the stack does not serve
    /// (any account of the organisation can put one on the bus): no cluster read, no zone listed.
    #[tokio::test]
    async fn a_trigger_from_an_unlisted_account_reads_and_writes_nothing() {
        let sources = Clusters::default();
        let dns = Zone1::with(vec![]);
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[("ACCOUNT_ID", "123456789012")]);
        let mut forged: serde_json::Value = serde_json::from_str(include_str!(
            "../../../events/dns-sync/load-balancer-created.json"
        ))
        .unwrap();
        forged["account"] = serde_json::json!("999999999999");
        let deadline = SystemTime::now() + Duration::from_secs(120);
        let err = handle(
            forged,
            deadline,
            &cfg,
            &sources,
            &dns,
            &n,
            &State::new(&memory),
        )
        .await
        .unwrap_err();
        assert_eq!(bridgekeeper::Classify::class(&err), Class::NonRetryable);
        assert!(err.to_string().contains("999999999999"));
        assert_eq!(*dns.calls.lock().unwrap(), 0);
        assert_eq!(
            sources.in_flight.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        assert_eq!(sources.widest.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(n.sent().is_empty());
    }

    /// A cluster whose RBAC predates the Gateway API reads (403 on the routes): its Ingresses'
    /// records are still kept right, its deletions wait, and the message says what to apply.
    #[tokio::test]
    async fn a_cluster_forbidding_gateway_api_reads_keeps_its_ingress_records_and_holds_deletions()
    {
        let sources = Clusters {
            ingresses: vec![(
                "prod",
                ingress("old", &["api.example.com".to_owned()], CLASSIC),
            )],
            gateway_api_forbidden: true,
            ..Default::default()
        };
        // An owned host no source names any more: under sync it would be deleted.
        let mut existing = owned("gone.example.com", "prod");
        existing.extend(owned("api.example.com", "prod"));
        if let Some(a) = existing[2].alias.as_mut() {
            a.dns_name = "old-1.ap-northeast-1.elb.amazonaws.com".into();
        }
        let dns = Zone1::with(existing);
        let (n, memory) = (Recorder::default(), Memory::default());
        let r = run(&config(&[]), &sources, &dns, &n, &State::new(&memory)).await;
        let z = &r.zones[0];
        assert_eq!(z.updated, ["api.example.com"], "{r:?}");
        assert!(z.deleted.is_empty());
        assert!(z.held.iter().any(|h| h.host == "gone.example.com"), "{r:?}");
        let error = &r.cluster_errors[0].error;
        assert!(
            error.contains("403") && error.contains("deploy/rbac/dns-sync.yaml"),
            "{error}"
        );
        assert!(n.sent()[0].body.contains("deploy/rbac/dns-sync.yaml"));
    }

    /// The review: one member account's AccessDenied (its role deleted) failed the run for
    /// every zone of every account. Now that account is reported, owned hosts elsewhere are
    /// still kept right, and no new host is created (it might belong in the unlisted zones).
    #[tokio::test]
    async fn a_member_account_that_cannot_be_read_stops_only_its_own_zones() {
        let sources = Clusters {
            ingresses: vec![(
                "prod",
                ingress(
                    "web",
                    &["api.example.com".to_owned(), "new.example.com".to_owned()],
                    CLASSIC,
                ),
            )],
            ..Default::default()
        };
        let mut existing = owned("api.example.com", "prod");
        // The owned record points at an older load balancer: it must still be updated.
        if let Some(a) = existing[0].alias.as_mut() {
            a.dns_name = "old-1.ap-northeast-1.elb.amazonaws.com".into();
        }
        let mut dns = Zone1::with(existing);
        dns.unreadable_account = Some("444444444444");
        let (n, memory) = (Recorder::default(), Memory::default());
        let r = run(&config(&[]), &sources, &dns, &n, &State::new(&memory)).await;
        assert_eq!(r.account_errors[0].account, "444444444444");
        let z = &r.zones[0];
        assert_eq!(z.updated, ["api.example.com"], "{r:?}");
        assert!(z.created.is_empty());
        assert!(
            z.held
                .iter()
                .any(|h| h.host == "new.example.com" && h.reason.contains("444444444444"))
        );
        let sent = n.sent();
        assert!(
            sent[0].body.contains("account 444444444444"),
            "{}",
            sent[0].body
        );
    }

    /// The review: a throttled zone after others were changed returned the error, and the
    /// report of those changes was lost. Now the changes are reported, then the run retries.
    #[tokio::test]
    async fn changes_are_reported_before_a_passing_failure_is_retried() {
        let sources = Clusters {
            ingresses: vec![(
                "prod",
                ingress("web", &["api.example.com".to_owned()], CLASSIC),
            )],
            ..Default::default()
        };
        let dns = TwoZones::default();
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[("HOST_POLICY", "*=example.com,*=example.org")]);
        let deadline = SystemTime::now() + Duration::from_secs(120);
        let mut srcs = sources;
        srcs.ingresses.push((
            "prod",
            ingress("org", &["api.example.org".to_owned()], CLASSIC),
        ));
        let err = handle(
            schedule(),
            deadline,
            &cfg,
            &srcs,
            &dns,
            &n,
            &State::new(&memory),
        )
        .await
        .unwrap_err();
        assert_eq!(bridgekeeper::Classify::class(&err), Class::Retryable);
        let sent = n.sent();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].body.contains("created  api.example.com"),
            "{}",
            sent[0].body
        );
        assert!(sent[0].body.contains("Throttling"), "{}", sent[0].body);
    }

    #[tokio::test]
    async fn eight_clusters_are_read_at_once_and_never_more_than_cluster_concurrency() {
        let (_, clusters) = bridgekeeper::cluster::testing::eks_clusters(8);
        for (setting, widest) in [(None, 8), (Some("3"), 3)] {
            let mut extra = vec![("CLUSTERS", clusters.as_str())];
            extra.extend(setting.map(|n| ("CLUSTER_CONCURRENCY", n)));
            let sources = Clusters::default();
            let dns = Zone1::with(vec![]);
            let (n, memory) = (Recorder::default(), Memory::default());
            let r = run(&config(&extra), &sources, &dns, &n, &State::new(&memory)).await;
            assert!(r.cluster_errors.is_empty(), "{r:?}");
            assert_eq!(
                sources.widest.load(std::sync::atomic::Ordering::SeqCst),
                widest,
                "CLUSTER_CONCURRENCY={setting:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_cut_off_and_holds_only_its_own_deletions() {
        let hosts = ["api.example.com".to_owned(), "example.com".to_owned()];
        let sources = Clusters {
            ingresses: vec![("prod", ingress("web", &hosts, CLASSIC))],
            hang: Some("dr"),
            ..Default::default()
        };
        let mut existing = owned("gone.example.com", "prod");
        existing.extend(owned("dr-only.example.com", "dr"));
        let dns = Zone1::with(existing);
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[("CLUSTER_TIMEOUT_SECONDS", "1")]);
        let r = run(&cfg, &sources, &dns, &n, &State::new(&memory)).await;

        assert_eq!(r.cluster_errors.len(), 1, "{r:?}");
        assert!(r.cluster_errors[0].error.contains("no answer within 1 s"));
        let z = &r.zones[0];
        assert_eq!(z.created, ["api.example.com", "example.com"]);
        assert_eq!(z.deleted, ["gone.example.com"], "prod was read whole");
        assert_eq!(z.held[0].host, "dr-only.example.com");
        assert!(dns.names().contains("A dr-only.example.com"));
        assert!(!dns.names().contains("A gone.example.com"));
    }

    #[tokio::test]
    async fn past_max_deletions_nothing_is_deleted_and_a_person_is_told() {
        let mut existing = Vec::new();
        for i in 0..3 {
            existing.extend(owned(&format!("h{i}.example.com"), "prod"));
        }
        let dns = Zone1::with(existing);
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[("MAX_DELETIONS", "2"), ("CLUSTERS", "prod=prod-eks")]);
        let r = run(&cfg, &Clusters::default(), &dns, &n, &State::new(&memory)).await;
        assert!(
            r.deletions_held
                .as_deref()
                .unwrap()
                .contains("MAX_DELETIONS (2)")
        );
        assert!(r.zones[0].deleted.is_empty());
        assert_eq!(r.zones[0].held.len(), 3);
        assert_eq!(*dns.calls.lock().unwrap(), 0);
        let sent = n.sent();
        assert!(
            sent[0]
                .body
                .contains("Deletions held: this run would delete 3 hosts")
        );
        // Raised for one run: they go.
        let cfg = config(&[("MAX_DELETIONS", "3"), ("CLUSTERS", "prod=prod-eks")]);
        let r = run(&cfg, &Clusters::default(), &dns, &n, &State::new(&memory)).await;
        assert_eq!(r.zones[0].deleted.len(), 3);
    }

    #[tokio::test]
    async fn a_lasting_problem_is_reported_when_it_starts_and_when_it_clears() {
        // A foreign CNAME where an Ingress wants a record: a conflict until someone removes it.
        let foreign = RecordSet {
            name: "www.example.com".into(),
            rtype: "CNAME".into(),
            ttl: Some(60),
            values: vec!["legacy.example.net".into()],
            ..RecordSet::default()
        };
        let sources = Clusters {
            ingresses: vec![("prod", ingress("web", &["www.example.com".into()], CLASSIC))],
            hang: None,
            ..Default::default()
        };
        let dns = Zone1::with(vec![foreign.clone()]);
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[("CLUSTERS", "prod=prod-eks")]);
        let state = State::new(&memory);
        run(&cfg, &sources, &dns, &n, &state).await;
        run(&cfg, &sources, &dns, &n, &state).await;
        // A cold start: a new process, the store remembers.
        run(&cfg, &sources, &dns, &n, &State::new(&memory)).await;
        let sent = n.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].subject.contains("1 new problems"),
            "{}",
            sent[0].subject
        );
        assert!(
            sent[0].body.contains("CONFLICT www.example.com"),
            "{}",
            sent[0].body
        );

        dns.records.lock().unwrap().retain(|r| r != &foreign);
        run(&cfg, &sources, &dns, &n, &State::new(&memory)).await;
        let sent = n.sent();
        assert_eq!(sent.len(), 2);
        assert!(sent[1].body.contains("Cleared:"), "{}", sent[1].body);
        assert!(
            sent[1].body.contains("created  www.example.com"),
            "{}",
            sent[1].body
        );
    }

    #[tokio::test]
    async fn without_the_store_a_warm_instance_still_reports_once() {
        let sources = Clusters {
            ingresses: vec![(
                "prod",
                ingress("web", &["www.example.com".into()], "web.other.example.net"),
            )],
            hang: None,
            ..Default::default()
        };
        let apex_mx = RecordSet {
            name: "www.example.com".into(),
            rtype: "MX".into(),
            ttl: Some(60),
            values: vec!["10 mail.example.net".into()],
            ..RecordSet::default()
        };
        let dns = Zone1::with(vec![apex_mx]);
        let n = Recorder::default();
        let broken = Memory {
            broken: true,
            ..Memory::default()
        };
        let state = State::new(&broken);
        let cfg = config(&[("CLUSTERS", "prod=prod-eks")]);
        for _ in 0..3 {
            run(&cfg, &sources, &dns, &n, &state).await;
        }
        assert_eq!(n.sent().len(), 1);
    }

    const INVALID: &str = r#"<?xml version="1.0"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>[RRSet with DNS name bad.example.com. is not permitted in zone example.com.]</Message></Error><RequestId>req-bad</RequestId></ErrorResponse>"#;

    fn has_bad_host(input: &ChangeResourceRecordSetsInput) -> bool {
        input.change_batch().is_some_and(|b| {
            b.changes().iter().any(|c| {
                c.resource_record_set()
                    .is_some_and(|r| r.name().starts_with("bad."))
            })
        })
    }

    /// Route53 refuses a whole batch for one bad change (the answer above is its documented
    /// form); moto cannot be made to refuse one host of a valid batch, so the SDK is mocked.
    #[tokio::test]
    async fn one_refused_host_of_fifty_costs_that_host_only() {
        let zones = mock!(Client::list_hosted_zones).then_output(|| {
            ListHostedZonesOutput::builder()
                .hosted_zones(
                    HostedZone::builder()
                        .id("/hostedzone/Z1")
                        .name("example.com.")
                        .caller_reference("r")
                        .build()
                        .unwrap(),
                )
                .marker("")
                .is_truncated(false)
                .max_items(100)
                .build()
                .unwrap()
        });
        let records = mock!(Client::list_resource_record_sets).then_output(|| {
            ListResourceRecordSetsOutput::builder()
                .set_resource_record_sets(Some(vec![]))
                .is_truncated(false)
                .max_items(300)
                .build()
                .unwrap()
        });
        let refused = mock!(Client::change_resource_record_sets)
            .match_requests(has_bad_host)
            .sequence()
            .http_status(400, Some(INVALID.into()))
            .repeatedly()
            .build();
        let applied = mock!(Client::change_resource_record_sets)
            .sequence()
            .output(crate::fakes::applied)
            .repeatedly()
            .build();
        let route53 = mock_client!(
            aws_sdk_route53,
            RuleMode::MatchAny,
            [&zones, &records, &refused, &applied]
        );
        let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::Config::builder()
                .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
                .build(),
        );
        let dns = AwsDns::new(route53, elb);
        let mut hosts: Vec<String> = (0..49).map(|i| format!("h{i:02}.example.com")).collect();
        hosts.push("bad.example.com".into());
        let sources = Clusters {
            ingresses: vec![("prod", ingress("many", &hosts, CLASSIC))],
            hang: None,
            ..Default::default()
        };
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[("CLUSTERS", "prod=prod-eks")]);
        let r = run(&cfg, &sources, &dns, &n, &State::new(&memory)).await;

        let z = &r.zones[0];
        assert_eq!(z.created.len(), 49);
        assert!(!z.created.contains(&"bad.example.com".to_owned()));
        assert_eq!(z.rejected.len(), 1);
        assert_eq!(z.rejected[0].host, "bad.example.com");
        assert!(
            z.rejected[0].reason.contains("is not permitted in zone"),
            "{:?}",
            z.rejected
        );
        // Halving 50 hosts down to the bad one (it sorts first): 50, 25, 12, 6, 3 and 1 refused;
        // the good halves (25, 13, 6, 3, 2) applied. About 2·log2(n) calls, not n.
        assert_eq!(refused.num_calls(), 6);
        assert_eq!(applied.num_calls(), 5);
        assert_eq!(z.batches, 11);
        assert!(n.sent()[0].body.contains("REJECTED bad.example.com"));
    }

    /// A host outside DOMAIN_FILTER is filtered, not a broken source: the source's vanished hosts
    /// are still deleted.
    #[tokio::test]
    async fn a_host_outside_the_domain_filter_holds_no_deletion() {
        let hosts = ["a.example.com".to_owned(), "b.other.org".to_owned()];
        let sources = Clusters {
            ingresses: vec![("prod", ingress("old", &hosts, CLASSIC))],
            hang: None,
            ..Default::default()
        };
        let dns = Zone1::with(owned("gone.example.com", "prod"));
        let (n, memory) = (Recorder::default(), Memory::default());
        let cfg = config(&[
            ("CLUSTERS", "prod=prod-eks"),
            ("DOMAIN_FILTER", "example.com"),
        ]);
        let r = run(&cfg, &sources, &dns, &n, &State::new(&memory)).await;
        assert!(
            r.skipped
                .iter()
                .any(|s| s.reason.contains("outside DOMAIN_FILTER"))
        );
        assert_eq!(r.zones[0].deleted, ["gone.example.com"], "{r:?}");
        assert!(r.zones[0].held.is_empty(), "{:?}", r.zones[0].held);
    }
}
