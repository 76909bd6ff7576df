//! A workload left for a person (a GitOps controller owns it, or its image was set back) is
//! named once, not in every message of every push of its image: `latest` is pushed many times a
//! day, and a message that repeats the same advice each time is a message nobody reads. The
//! store keeps, per cluster and repository, which holds were said; it forgets them after
//! `IDEMPOTENCY_TTL_SECONDS` without a push that sees them again (a reminder, not a loop).

use std::collections::BTreeSet;

use bridgekeeper::idempotency::{MAX_REMEMBERED, Remember};
use tracing::warn;

use crate::image::Push;
use crate::report::{ClusterReport, Skipped};

fn key(cluster: &str, push: &Push) -> String {
    format!("held#{cluster}#{}/{}", push.registry, push.repository)
}

/// What identifies a hold: the workload and why, without the advice (the reason's text up to its
/// first colon: "managed by Argo CD application shop-prod", "set back to … after Bridgekeeper
/// pinned sha256:…").
fn line(s: &Skipped) -> String {
    let why = s.reason.split(':').next().unwrap_or_default();
    format!("{}\t{why}", s.workload.label())
}

/// Marks the holds of each cluster said in an earlier message (`told_before`), and remembers
/// the ones said now. A store that cannot be read says them all again (and warns).
pub async fn mark_told<M: Remember>(clusters: &mut [ClusterReport], push: &Push, memory: &M) {
    for c in clusters.iter_mut() {
        if !c.skipped.iter().any(|s| s.held) {
            continue;
        }
        let key = key(&c.cluster, push);
        let said: BTreeSet<String> = match memory.recall(&key).await {
            Ok(v) => v.unwrap_or_default().lines().map(str::to_owned).collect(),
            Err(e) => {
                bridgekeeper::idempotency::skipped(&key, &e);
                BTreeSet::new()
            }
        };
        let mut now = said.clone();
        for s in c.skipped.iter_mut().filter(|s| s.held) {
            let l = line(s);
            s.told_before = said.contains(&l);
            now.insert(l);
        }
        let mut value = now.into_iter().collect::<Vec<_>>().join("\n");
        if value.len() > MAX_REMEMBERED {
            // Too many to keep with the old ones: keep this push's.
            value = c
                .skipped
                .iter()
                .filter(|s| s.held)
                .map(line)
                .collect::<Vec<_>>()
                .join("\n");
        }
        // Written every time a hold is seen, unchanged or not: the write renews the entry's
        // expiry, so a workload held for months is not named again every week.
        if let Err(e) = memory.remember(&key, &value).await {
            warn!(error = %e, cluster = %c.cluster, "holds not remembered; the next push names them again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Kind, WorkloadRef};
    use bridgekeeper::idempotency::testing::Memory;

    fn report(names: &[&str]) -> Vec<ClusterReport> {
        let mut c = ClusterReport::new("dev");
        c.skipped = names
            .iter()
            .map(|n| {
                let workload = WorkloadRef {
                    kind: Kind::Deployment,
                    namespace: "shop".into(),
                    name: (*n).into(),
                };
                Skipped::hold(
                    workload,
                    format!("managed by Argo CD application {n}: point it at the new digest"),
                )
            })
            .collect();
        vec![c]
    }

    fn push() -> Push {
        Push {
            registry: "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
            repository: "shop/api".into(),
            tag: "latest".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        }
    }

    #[tokio::test]
    async fn a_hold_is_told_once_and_a_new_one_is_told_when_it_appears() {
        let memory = Memory::default();
        let mut first = report(&["argo-api"]);
        mark_told(&mut first, &push(), &memory).await;
        assert!(!first[0].skipped[0].told_before);
        let mut second = report(&["argo-api", "flux-api"]);
        mark_told(&mut second, &push(), &memory).await;
        let told: Vec<bool> = second[0].skipped.iter().map(|s| s.told_before).collect();
        assert_eq!(told, [true, false]);
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_read_tells_every_hold_again() {
        let memory = Memory {
            broken: true,
            ..Memory::default()
        };
        let mut r = report(&["argo-api"]);
        mark_told(&mut r, &push(), &memory).await;
        assert!(!r[0].skipped[0].told_before);
    }
}
