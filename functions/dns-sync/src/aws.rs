//! The AWS adapter: hosted zones and records (Route53), load balancers (ELBv2), and carrying out
//! a zone's planned batches.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_route53::types::{
    AliasTarget as R53Alias, Change, ChangeAction, ChangeBatch, CidrRoutingConfig, Coordinates,
    GeoLocation, GeoProximityLocation, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, ResourceRecordSetRegion, RrType,
};
use bridgekeeper::AwsError;
use bridgekeeper::accounts::{AccountError, Accounts, Scope};
use bridgekeeper::classify::SdkResultExt;
use tracing::info;

use crate::records::{
    AliasTarget, DnsChange, GeoProximity, LoadBalancer, RecordSet, Routing, normalize,
};
use crate::zones::Zone;

/// What dns-sync asks of AWS; the handler is generic over it.
/// The hosted zones found, and the member accounts whose zones could not be listed (each
/// with its error): one account's broken role must not stop the others' sync.
#[derive(Debug, Default)]
pub struct ZoneListing {
    pub zones: Vec<Zone>,
    pub unreadable: Vec<(String, AwsError)>,
}

impl From<Vec<Zone>> for ZoneListing {
    fn from(zones: Vec<Zone>) -> Self {
        ZoneListing {
            zones,
            unreadable: vec![],
        }
    }
}

pub trait Dns: Send + Sync {
    /// The hub's own zones (their listing failing fails the run) and the member accounts'.
    fn zones(&self) -> impl Future<Output = Result<ZoneListing, AwsError>> + Send;
    fn records(&self, zone: &Zone)
    -> impl Future<Output = Result<Vec<RecordSet>, AwsError>> + Send;
    /// Load balancers by normalized DNS name.
    fn load_balancers(
        &self,
    ) -> impl Future<Output = Result<HashMap<String, LoadBalancer>, AwsError>> + Send;
    /// One ChangeResourceRecordSets call; returns the change id.
    fn apply(
        &self,
        zone: &Zone,
        batch: &[DnsChange],
        comment: &str,
    ) -> impl Future<Output = Result<String, AwsError>> + Send;
}

pub struct AwsDns {
    route53: aws_sdk_route53::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
    members: Option<Members>,
}

/// Other accounts: the zones of `zone_accounts` are listed and written with the member role
/// there; the load balancers of the clusters' accounts and regions are listed there.
struct Members {
    accounts: Accounts,
    zone_accounts: Vec<String>,
    lb_scopes: Vec<Scope>,
}

impl AwsDns {
    pub fn new(
        route53: aws_sdk_route53::Client,
        elb: aws_sdk_elasticloadbalancingv2::Client,
    ) -> Self {
        AwsDns {
            route53,
            elb,
            members: None,
        }
    }

    /// The function's own account, and `zone_accounts`' zones and the load balancers of the
    /// clusters' accounts and regions (`lb_scopes`) through their member roles.
    pub fn across(accounts: &Accounts, zone_accounts: &[String], lb_scopes: &[Scope]) -> Self {
        let own = accounts.own();
        let mut dns = AwsDns::new(
            route53_client(own),
            aws_sdk_elasticloadbalancingv2::Client::new(own),
        );
        let zone_accounts: Vec<String> = zone_accounts
            .iter()
            .filter(|a| !accounts.is_own(Some(a)))
            .cloned()
            .collect();
        // A cluster ARN in the function's own account and region: its load balancers are the ones
        // the own listing finds.
        let lb_scopes: Vec<Scope> = lb_scopes
            .iter()
            .filter(|s| !accounts.is_here(s))
            .cloned()
            .collect();
        if !zone_accounts.is_empty() || !lb_scopes.is_empty() {
            dns.members = Some(Members {
                accounts: accounts.clone(),
                zone_accounts,
                lb_scopes,
            });
        }
        dns
    }

    /// The Route53 client for a zone: the member's if it was listed in a member account.
    async fn route53_for(&self, zone: &Zone) -> Result<aws_sdk_route53::Client, AwsError> {
        match (&self.members, &zone.account) {
            (Some(m), Some(account)) => Ok(route53_client(
                &m.accounts
                    .sdk(&Scope::account(account))
                    .await
                    .map_err(AccountError::into_aws)?,
            )),
            _ => Ok(self.route53.clone()),
        }
    }
}

/// Route53 allows five requests per second per account, shared with every other tool there
/// ("Quotas on API requests", Route 53 Developer Guide): adaptive retry slows this client down
/// when it is throttled instead of spending its attempts at once. The attempts reach well past a
/// run's deadline; the handler cuts each call off at that deadline.
pub fn route53_client(sdk: &aws_config::SdkConfig) -> aws_sdk_route53::Client {
    aws_sdk_route53::Client::from_conf(
        aws_sdk_route53::config::Builder::from(sdk)
            .retry_config(route53_retry())
            .build(),
    )
}

fn route53_retry() -> aws_sdk_route53::config::retry::RetryConfig {
    aws_sdk_route53::config::retry::RetryConfig::adaptive()
        .with_max_attempts(ROUTE53_ATTEMPTS)
        .with_max_backoff(std::time::Duration::from_secs(10))
}

/// With backoff capped at 10 s, about three minutes of throttling.
pub const ROUTE53_ATTEMPTS: u32 = 20;

async fn list_zones(
    route53: &aws_sdk_route53::Client,
    account: Option<&str>,
) -> Result<Vec<Zone>, AwsError> {
    let pages = route53.list_hosted_zones().into_paginator().items().send();
    let all: Vec<_> = pages
        .collect::<Result<_, _>>()
        .await
        .context("route53:ListHostedZones")?;
    Ok(all
        .iter()
        .filter_map(|z| {
            Some(Zone {
                id: zone_id(z.id()),
                name: normalize(z.name())?,
                private: z.config().is_some_and(|c| c.private_zone()),
                account: account.map(str::to_owned),
            })
        })
        .collect())
}

async fn list_load_balancers(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
) -> Result<HashMap<String, LoadBalancer>, AwsError> {
    let pages = elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send();
    let all: Vec<_> = pages
        .collect::<Result<_, _>>()
        .await
        .context("elasticloadbalancing:DescribeLoadBalancers")?;
    Ok(all
        .iter()
        .filter_map(|lb| {
            let address_type = lb.ip_address_type().map(|t| t.as_str()).unwrap_or_default();
            Some((
                normalize(lb.dns_name()?)?,
                LoadBalancer {
                    canonical_zone_id: lb.canonical_hosted_zone_id()?.to_owned(),
                    dualstack: address_type.starts_with("dualstack"),
                    ipv6_only: address_type == crate::sources::IPV6_ONLY,
                },
            ))
        })
        .collect())
}

fn zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_owned()
}

fn from_route53(r: &ResourceRecordSet) -> Option<RecordSet> {
    Some(RecordSet {
        name: normalize(r.name())?,
        rtype: r.r#type().as_str().to_owned(),
        ttl: r.ttl(),
        values: r
            .resource_records()
            .iter()
            .map(|v| v.value().to_owned())
            .collect(),
        alias: r.alias_target().map(|a| AliasTarget {
            zone_id: a.hosted_zone_id().to_owned(),
            dns_name: normalize(a.dns_name()).unwrap_or_default(),
            evaluate_health: a.evaluate_target_health(),
        }),
        routing: routing_of(r),
    })
}

/// Every routing field Route53 lists, so a DELETE of the record names it exactly.
fn routing_of(r: &ResourceRecordSet) -> Option<Routing> {
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let routing = Routing {
        set_identifier: owned(r.set_identifier()),
        weight: r.weight(),
        region: r.region().map(|v| v.as_str().to_owned()),
        failover: r.failover().map(|v| v.as_str().to_owned()),
        geo_location: r.geo_location().map(|g| {
            (
                owned(g.continent_code()),
                owned(g.country_code()),
                owned(g.subdivision_code()),
            )
        }),
        geo_proximity: r.geo_proximity_location().map(|g| GeoProximity {
            aws_region: owned(g.aws_region()),
            local_zone_group: owned(g.local_zone_group()),
            coordinates: g
                .coordinates()
                .map(|c| (c.latitude().to_owned(), c.longitude().to_owned())),
            bias: g.bias(),
        }),
        multi_value_answer: r.multi_value_answer(),
        cidr: r
            .cidr_routing_config()
            .map(|c| (c.collection_id().to_owned(), c.location_name().to_owned())),
        health_check_id: owned(r.health_check_id()),
        traffic_policy_instance_id: owned(r.traffic_policy_instance_id()),
    };
    (routing != Routing::default()).then_some(routing)
}

fn to_route53(r: &RecordSet) -> Result<ResourceRecordSet, aws_sdk_route53::error::BuildError> {
    let mut b = ResourceRecordSet::builder()
        .name(format!("{}.", r.name))
        .r#type(RrType::from(r.rtype.as_str()))
        .set_ttl(r.ttl);
    for v in &r.values {
        b = b.resource_records(ResourceRecord::builder().value(v).build()?);
    }
    if let Some(a) = &r.alias {
        b = b.alias_target(
            R53Alias::builder()
                .hosted_zone_id(&a.zone_id)
                .dns_name(format!("{}.", a.dns_name))
                .evaluate_target_health(a.evaluate_health)
                .build()?,
        );
    }
    if let Some(x) = &r.routing {
        b = b
            .set_set_identifier(x.set_identifier.clone())
            .set_weight(x.weight)
            .set_region(x.region.as_deref().map(ResourceRecordSetRegion::from))
            .set_failover(x.failover.as_deref().map(ResourceRecordSetFailover::from))
            .set_multi_value_answer(x.multi_value_answer)
            .set_health_check_id(x.health_check_id.clone())
            .set_traffic_policy_instance_id(x.traffic_policy_instance_id.clone());
        if let Some((continent, country, subdivision)) = &x.geo_location {
            b = b.geo_location(
                GeoLocation::builder()
                    .set_continent_code(continent.clone())
                    .set_country_code(country.clone())
                    .set_subdivision_code(subdivision.clone())
                    .build(),
            );
        }
        if let Some(g) = &x.geo_proximity {
            let coordinates = match &g.coordinates {
                Some((lat, lon)) => Some(
                    Coordinates::builder()
                        .latitude(lat)
                        .longitude(lon)
                        .build()?,
                ),
                None => None,
            };
            b = b.geo_proximity_location(
                GeoProximityLocation::builder()
                    .set_aws_region(g.aws_region.clone())
                    .set_local_zone_group(g.local_zone_group.clone())
                    .set_coordinates(coordinates)
                    .set_bias(g.bias)
                    .build(),
            );
        }
        if let Some((collection, location)) = &x.cidr {
            b = b.cidr_routing_config(
                CidrRoutingConfig::builder()
                    .collection_id(collection)
                    .location_name(location)
                    .build()?,
            );
        }
    }
    b.build()
}

impl Dns for AwsDns {
    async fn zones(&self) -> Result<ZoneListing, AwsError> {
        let mut listing = ZoneListing::from(list_zones(&self.route53, None).await?);
        let Some(m) = &self.members else {
            return Ok(listing);
        };
        for account in &m.zone_accounts {
            let theirs = async {
                let sdk = m
                    .accounts
                    .sdk(&Scope::account(account))
                    .await
                    .map_err(AccountError::into_aws)?;
                list_zones(&route53_client(&sdk), Some(account)).await
            };
            match theirs.await {
                Ok(theirs) => listing.zones.extend(theirs),
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "zones of a member account not listed");
                    listing.unreadable.push((account.clone(), e));
                }
            }
        }
        Ok(listing)
    }

    async fn records(&self, zone: &Zone) -> Result<Vec<RecordSet>, AwsError> {
        // ListResourceRecordSets pages by (name, type, identifier) rather than a token.
        let route53 = self.route53_for(zone).await?;
        let mut out = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> = None;
        loop {
            let mut req = route53.list_resource_record_sets().hosted_zone_id(&zone.id);
            if let Some((name, rtype, id)) = next.take() {
                req = req
                    .start_record_name(name)
                    .start_record_type(rtype)
                    .set_start_record_identifier(id);
            }
            let page = req.send().await.context("route53:ListResourceRecordSets")?;
            out.extend(page.resource_record_sets().iter().filter_map(from_route53));
            match (
                page.is_truncated(),
                page.next_record_name(),
                page.next_record_type(),
            ) {
                (true, Some(name), Some(rtype)) => {
                    next = Some((
                        name.to_owned(),
                        rtype.clone(),
                        page.next_record_identifier().map(str::to_owned),
                    ))
                }
                _ => return Ok(out),
            }
        }
    }

    async fn load_balancers(&self) -> Result<HashMap<String, LoadBalancer>, AwsError> {
        let mut found = list_load_balancers(&self.elb).await?;
        if let Some(m) = &self.members {
            for scope in &m.lb_scopes {
                let sdk = m
                    .accounts
                    .sdk(scope)
                    .await
                    .map_err(AccountError::into_aws)?;
                let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
                found.extend(list_load_balancers(&elb).await?);
            }
        }
        Ok(found)
    }

    async fn apply(
        &self,
        zone: &Zone,
        batch: &[DnsChange],
        comment: &str,
    ) -> Result<String, AwsError> {
        let invalid = |e: aws_sdk_route53::error::BuildError| AwsError {
            operation: "route53:ChangeResourceRecordSets",
            code: Some("InvalidChangeBatch".into()),
            message: Some(e.to_string()),
            request_id: None,
            status: None,
            class: bridgekeeper::Class::NonRetryable,
            source: Box::new(e),
        };
        let mut changes = Vec::with_capacity(batch.len());
        for c in batch {
            let action = match c {
                DnsChange::Create(_) => ChangeAction::Create,
                DnsChange::Upsert(_) => ChangeAction::Upsert,
                DnsChange::Delete(_) => ChangeAction::Delete,
            };
            let set = to_route53(c.record()).map_err(invalid)?;
            changes.push(
                Change::builder()
                    .action(action)
                    .resource_record_set(set)
                    .build()
                    .map_err(invalid)?,
            );
        }
        let batch_len = changes.len();
        let change_batch = ChangeBatch::builder()
            .comment(comment)
            .set_changes(Some(changes))
            .build()
            .map_err(invalid)?;
        // PriorRequestNotComplete and throttling are retried by the SDK, with backoff and jitter.
        let out = self
            .route53_for(zone)
            .await?
            .change_resource_record_sets()
            .hosted_zone_id(&zone.id)
            .change_batch(change_batch)
            .send()
            .await
            .context("route53:ChangeResourceRecordSets")?;
        let id = out
            .change_info()
            .map(|c| c.id().to_owned())
            .unwrap_or_default();
        info!(zone = %zone.id, changes = batch_len, change = %id, "route53 batch applied");
        Ok(id)
    }
}

/// What moto cannot do: a change pending in the zone (PriorRequestNotComplete), throttling.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::fakes::applied;
    use aws_sdk_route53::Client;
    use aws_sdk_route53::config::retry::RetryConfig;
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use bridgekeeper::Class;

    use super::*;

    const PENDING: &str = r#"<?xml version="1.0"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type>
<Code>PriorRequestNotComplete</Code><Message>The request was rejected because Route 53 was still processing a prior request.</Message>
</Error><RequestId>req-pending</RequestId></ErrorResponse>"#;

    fn dns(rule: &Rule) -> AwsDns {
        let route53 = mock_client!(aws_sdk_route53, RuleMode::Sequential, [rule], |c| c
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(4)
                    .with_initial_backoff(Duration::from_millis(1))
            ));
        let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::Config::builder()
                .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
                .build(),
        );
        AwsDns::new(route53, elb)
    }

    fn z1() -> Zone {
        Zone {
            id: "Z1".into(),
            name: "example.com".into(),
            private: false,
            account: None,
        }
    }

    fn batch() -> Vec<DnsChange> {
        vec![DnsChange::Create(RecordSet {
            name: "api.example.com".into(),
            rtype: "CNAME".into(),
            ttl: Some(300),
            values: vec!["lb.example.net".into()],
            ..RecordSet::default()
        })]
    }

    #[tokio::test]
    async fn a_pending_prior_change_is_waited_out_then_applied() {
        let rule = mock!(Client::change_resource_record_sets)
            .sequence()
            .http_status(400, Some(PENDING.into()))
            .times(2)
            .output(applied)
            .build();
        let id = dns(&rule).apply(&z1(), &batch(), "test").await.unwrap();
        assert_eq!(id, "/change/C1");
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn a_change_still_pending_after_the_retries_is_a_retryable_error() {
        let rule = mock!(Client::change_resource_record_sets)
            .sequence()
            .http_status(400, Some(PENDING.into()))
            .repeatedly()
            .build();
        let err = dns(&rule).apply(&z1(), &batch(), "test").await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("PriorRequestNotComplete"));
        assert_eq!(err.class, Class::Retryable);
        assert_eq!(rule.num_calls(), 4);
    }

    #[tokio::test]
    async fn throttling_is_retried() {
        let rule = mock!(Client::change_resource_record_sets)
            .sequence()
            .http_status(
                400,
                Some(PENDING.replace("PriorRequestNotComplete", "Throttling")),
            )
            .output(applied)
            .build();
        assert!(dns(&rule).apply(&z1(), &batch(), "test").await.is_ok());
        assert_eq!(rule.num_calls(), 2);
    }

    /// Sleeps that return at once (the test takes no time) and add up what was asked of them.
    #[derive(Debug, Default, Clone)]
    struct Waited(std::sync::Arc<std::sync::Mutex<Duration>>);

    impl aws_sdk_route53::config::AsyncSleep for Waited {
        fn sleep(&self, d: Duration) -> aws_sdk_route53::config::Sleep {
            *self.0.lock().unwrap() += d;
            aws_sdk_route53::config::Sleep::new(std::future::ready(()))
        }
    }

    /// A throttle that outlasts the SDK's default three attempts (Route53's five requests a
    /// second are shared with every tool in the account) is waited out, the adaptive retry
    /// slowing the client down rather than spending its attempts at once.
    #[tokio::test]
    async fn a_long_throttle_is_waited_out_by_the_adaptive_retry() {
        let mut rule = mock!(Client::list_hosted_zones).sequence();
        for _ in 0..12 {
            rule = rule.http_status(
                400,
                Some(PENDING.replace("PriorRequestNotComplete", "Throttling")),
            );
        }
        let rule = rule
            .output(|| {
                aws_sdk_route53::operation::list_hosted_zones::ListHostedZonesOutput::builder()
                    .set_hosted_zones(Some(vec![]))
                    .marker("")
                    .is_truncated(false)
                    .max_items(100)
                    .build()
                    .unwrap()
            })
            .build();
        let waited = Waited::default();
        let sleep = aws_sdk_route53::config::SharedAsyncSleep::new(waited.clone());
        let route53 = mock_client!(aws_sdk_route53, RuleMode::Sequential, [&rule], |c| c
            .retry_config(route53_retry())
            .sleep_impl(sleep.clone()));
        assert!(list_zones(&route53, None).await.unwrap().is_empty());
        assert_eq!(rule.num_calls(), 13);
        // Spaced out, not sent back to back (how long depends on the rate the limiter measured).
        assert!(*waited.0.lock().unwrap() > Duration::ZERO);
    }

    /// A DELETE must repeat every field of the record set, or Route53 answers "values provided do
    /// not match the current values": whatever is listed is written back the same.
    /// Only other accounts and regions are listed through member roles: a cluster ARN in the
    /// function's own account and region adds no second listing of its own load balancers.
    #[test]
    fn only_other_accounts_and_regions_are_reached_through_member_roles() {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let own = "111111111111";
        let accounts = Accounts::new(&sdk, Some(own.into()), Some("bk".into()), None, "bk");
        let here = Scope::account(own).in_region("eu-west-1");
        let dns = AwsDns::across(&accounts, &[own.to_owned()], std::slice::from_ref(&here));
        assert!(dns.members.is_none());
        let elsewhere = Scope::account(own).in_region("us-east-1");
        let member = Scope::account("222222222222").in_region("eu-west-1");
        let dns = AwsDns::across(&accounts, &[], &[here, elsewhere.clone(), member.clone()]);
        assert_eq!(dns.members.unwrap().lb_scopes, [elsewhere, member]);
    }

    #[test]
    fn a_routing_policy_record_is_read_and_written_whole() {
        let record = RecordSet {
            name: "api.example.com".into(),
            rtype: "A".into(),
            ttl: Some(60),
            values: vec!["192.0.2.1".into()],
            alias: None,
            routing: Some(Routing {
                set_identifier: Some("eu".into()),
                weight: Some(10),
                region: Some("eu-west-1".into()),
                failover: Some("PRIMARY".into()),
                geo_location: Some((Some("EU".into()), None, None)),
                geo_proximity: Some(GeoProximity {
                    aws_region: None,
                    local_zone_group: None,
                    coordinates: Some(("51.50".into(), "-0.12".into())),
                    bias: Some(10),
                }),
                multi_value_answer: Some(false),
                cidr: Some(("c-1".into(), "office".into())),
                health_check_id: Some("hc-1".into()),
                traffic_policy_instance_id: None,
            }),
        };
        let sdk = to_route53(&record).unwrap();
        assert_eq!(sdk.weight(), Some(10));
        assert_eq!(from_route53(&sdk).unwrap(), record);
        let simple = RecordSet {
            routing: None,
            ..record
        };
        assert_eq!(from_route53(&to_route53(&simple).unwrap()).unwrap(), simple);
    }
}
