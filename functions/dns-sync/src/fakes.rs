//! The crate's test doubles, for any of its tests: clusters that list fixed Ingresses (one may
//! hang), a zone kept in memory that counts its changes, two zones of which one is throttled,
//! and any number of zones in memory counting every Route53 call.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
use aws_sdk_route53::types::{ChangeInfo, ChangeStatus};
use bridgekeeper::AwsError;
use bridgekeeper::cluster::ClusterError as KubeError;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use crate::aws::{Dns, ZoneListing};
use crate::gateway::{Gateway, Route};
use crate::kube::Sources;
use crate::records::{DnsChange, LoadBalancer, RecordSet};
use crate::zones::Zone;

/// Ingresses per cluster; a cluster named in `hang` never answers. Counts the ingress lists
/// in flight at once.
#[derive(Default)]
pub struct Clusters {
    pub ingresses: Vec<(&'static str, Ingress)>,
    pub routes: Vec<(&'static str, Route)>,
    pub gateways: Vec<(&'static str, Gateway)>,
    pub hang: Option<&'static str>,
    /// The cluster's RBAC predates the Gateway API reads: routes answer 403.
    pub gateway_api_forbidden: bool,
    pub in_flight: std::sync::atomic::AtomicUsize,
    pub widest: std::sync::atomic::AtomicUsize,
}

impl Sources for Clusters {
    async fn ingresses(&self, cluster: &str, _: Option<&str>) -> Result<Vec<Ingress>, KubeError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.hang == Some(cluster) {
            std::future::pending::<()>().await;
        }
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.widest.fetch_max(now, SeqCst);
        tokio::task::yield_now().await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(self
            .ingresses
            .iter()
            .filter(|(c, _)| *c == cluster)
            .map(|(_, i)| i.clone())
            .collect())
    }
    async fn services(&self, _: &str, _: Option<&str>) -> Result<Vec<Service>, KubeError> {
        Ok(vec![])
    }
    async fn routes(&self, cluster: &str, _: Option<&str>) -> Result<Vec<Route>, KubeError> {
        if self.gateway_api_forbidden {
            let status = kube::core::Status {
                code: 403,
                message: "httproutes.gateway.networking.k8s.io is forbidden".into(),
                ..Default::default()
            };
            return Err(KubeError::api(
                cluster,
                "list httproutes.v1",
                kube::Error::Api(Box::new(status)),
            ));
        }
        Ok(of(&self.routes, cluster))
    }
    async fn gateways(&self, cluster: &str, _: Option<&str>) -> Result<Vec<Gateway>, KubeError> {
        Ok(of(&self.gateways, cluster))
    }
}

fn of<T: Clone>(listed: &[(&str, T)], cluster: &str) -> Vec<T> {
    listed
        .iter()
        .filter(|(c, _)| *c == cluster)
        .map(|(_, x)| x.clone())
        .collect()
}

/// One zone, `example.com`, applying batches to its record list.
pub struct Zone1 {
    pub records: Mutex<Vec<RecordSet>>,
    pub calls: Mutex<usize>,
    /// A member account whose zones cannot be listed (its role refuses).
    pub unreadable_account: Option<&'static str>,
}

impl Zone1 {
    pub fn with(records: Vec<RecordSet>) -> Self {
        Zone1 {
            records: Mutex::new(records),
            calls: Mutex::new(0),
            unreadable_account: None,
        }
    }
    pub fn names(&self) -> BTreeSet<String> {
        let r = self.records.lock().unwrap();
        r.iter()
            .map(|r| format!("{} {}", r.rtype, r.name))
            .collect()
    }
}

impl Dns for Zone1 {
    async fn zones(&self) -> Result<ZoneListing, AwsError> {
        let mut listing = ZoneListing::from(vec![Zone {
            id: "Z1".into(),
            name: "example.com".into(),
            private: false,
            account: None,
        }]);
        if let Some(account) = self.unreadable_account {
            listing.unreadable.push((
                account.to_owned(),
                AwsError::fake("sts:AssumeRole", "AccessDenied", 403, "not authorized"),
            ));
        }
        Ok(listing)
    }
    async fn records(&self, _: &Zone) -> Result<Vec<RecordSet>, AwsError> {
        Ok(self.records.lock().unwrap().clone())
    }
    async fn load_balancers(&self) -> Result<HashMap<String, LoadBalancer>, AwsError> {
        Ok(HashMap::new())
    }
    async fn apply(&self, _: &Zone, batch: &[DnsChange], _: &str) -> Result<String, AwsError> {
        *self.calls.lock().unwrap() += 1;
        apply_to(&mut self.records.lock().unwrap(), batch);
        Ok("C1".into())
    }
}

/// example.com takes changes; example.org's records cannot be listed (throttled).
#[derive(Default)]
pub struct TwoZones {
    pub applied: Mutex<Vec<String>>,
}

impl Dns for TwoZones {
    async fn zones(&self) -> Result<ZoneListing, AwsError> {
        let zone = |id: &str, name: &str| Zone {
            id: id.into(),
            name: name.into(),
            private: false,
            account: None,
        };
        Ok(ZoneListing::from(vec![
            zone("Z1", "example.com"),
            zone("Z2", "example.org"),
        ]))
    }
    async fn records(&self, zone: &Zone) -> Result<Vec<RecordSet>, AwsError> {
        match zone.id.as_str() {
            "Z2" => Err(AwsError::fake(
                "route53:ListResourceRecordSets",
                "Throttling",
                400,
                "Rate exceeded",
            )),
            _ => Ok(vec![]),
        }
    }
    async fn load_balancers(&self) -> Result<HashMap<String, LoadBalancer>, AwsError> {
        Ok(HashMap::new())
    }
    async fn apply(&self, zone: &Zone, _: &[DnsChange], _: &str) -> Result<String, AwsError> {
        self.applied.lock().unwrap().push(zone.id.clone());
        Ok("C1".into())
    }
}

/// Zones `z0.example.com` … kept in memory; every call counted, as Route53 would bill its quota.
/// `stalled` zones never answer a read (a throttle that outlasts the run).
#[derive(Default)]
pub struct Counted {
    pub zones: Vec<Zone>,
    pub records: Mutex<HashMap<String, Vec<RecordSet>>>,
    pub stalled: BTreeSet<String>,
    pub listings: AtomicUsize,
    pub reads: AtomicUsize,
    pub batches: AtomicUsize,
}

impl Counted {
    pub fn zones(n: usize) -> Self {
        Counted {
            zones: (0..n)
                .map(|i| Zone {
                    id: format!("Z{i}"),
                    name: format!("z{i}.example.com"),
                    private: false,
                    account: None,
                })
                .collect(),
            ..Counted::default()
        }
    }
    /// Listings, zone reads and change batches so far.
    pub fn calls(&self) -> (usize, usize, usize) {
        (
            self.listings.load(SeqCst),
            self.reads.load(SeqCst),
            self.batches.load(SeqCst),
        )
    }
}

impl Dns for Counted {
    async fn zones(&self) -> Result<ZoneListing, AwsError> {
        self.listings.fetch_add(1, SeqCst);
        Ok(ZoneListing::from(self.zones.clone()))
    }
    async fn records(&self, zone: &Zone) -> Result<Vec<RecordSet>, AwsError> {
        self.reads.fetch_add(1, SeqCst);
        if self.stalled.contains(&zone.id) {
            std::future::pending::<()>().await;
        }
        let records = self.records.lock().unwrap();
        Ok(records.get(&zone.id).cloned().unwrap_or_default())
    }
    async fn load_balancers(&self) -> Result<HashMap<String, LoadBalancer>, AwsError> {
        Ok(HashMap::new())
    }
    async fn apply(&self, zone: &Zone, batch: &[DnsChange], _: &str) -> Result<String, AwsError> {
        self.batches.fetch_add(1, SeqCst);
        let mut all = self.records.lock().unwrap();
        apply_to(all.entry(zone.id.clone()).or_default(), batch);
        Ok("C1".into())
    }
}

/// A batch as Route53 carries it out.
fn apply_to(records: &mut Vec<RecordSet>, batch: &[DnsChange]) {
    for c in batch {
        match c {
            DnsChange::Create(r) | DnsChange::Upsert(r) => {
                records.retain(|x| (&x.name, &x.rtype) != (&r.name, &r.rtype));
                records.push(r.clone());
            }
            DnsChange::Delete(r) => records.retain(|x| x != r),
        }
    }
}

/// An Ingress in `shop` naming `hosts`, published at `lb`.
pub fn ingress(name: &str, hosts: &[String], lb: &str) -> Ingress {
    let rules: Vec<_> = hosts
        .iter()
        .map(|h| serde_json::json!({ "host": h }))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"rules": rules},
        "status": {"loadBalancer": {"ingress": [{"hostname": lb}]}}
    }))
    .unwrap()
}

/// The sample schedule event.
pub fn schedule() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../events/dns-sync/schedule.json")).unwrap()
}

/// Route53's answer to an accepted batch.
pub fn applied() -> ChangeResourceRecordSetsOutput {
    let info = ChangeInfo::builder()
        .id("/change/C1")
        .status(ChangeStatus::Pending)
        .submitted_at(aws_sdk_route53::primitives::DateTime::from_secs(0))
        .build()
        .unwrap();
    ChangeResourceRecordSetsOutput::builder()
        .change_info(info)
        .build()
}
