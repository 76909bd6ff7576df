//! Following a rollout to its end, inside the invocation's own deadline: the Deployment's status
//! and what its new pods say, then (with `ROLLBACK_ON_FAILURE`) the previous images re-pinned.
//! Watches run after the patches, never holding a patch slot.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::Config;
use crate::domain::Push;
use crate::health::{self, Progress};
use crate::kube::Kube;
use crate::workload::Workload;

/// Kept back from the Lambda deadline to send the report: a function that times out must never
/// leave a rollout unreported.
pub const REPORT_MARGIN: Duration = Duration::from_secs(20);
/// Watches in flight at once (each a GET and a pod LIST per poll).
pub const WATCH_CONCURRENCY: usize = 16;

/// The last moment work may start and still leave time to report: the invocation's deadline
/// less the report margin.
pub fn report_by(deadline: SystemTime) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(REPORT_MARGIN);
    Instant::now() + left
}

/// Until when rollouts are watched: `WATCH_TIMEOUT_SECONDS` from now, but never past the
/// invocation's deadline less the report margin. `None`: not watched (off, or no time).
pub fn watch_until(config: &Config, deadline: SystemTime) -> Option<Instant> {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default()
        .saturating_sub(REPORT_MARGIN);
    let budget = config.watch_timeout.min(left);
    (config.watch && !budget.is_zero()).then(|| Instant::now() + budget)
}

/// How the rollout ended (`None` when not watched) and, if it failed and rollback is on, what
/// the rollback did.
pub async fn follow<K: Kube>(
    kube: &K,
    cluster: &str,
    push: &Push,
    config: &Config,
    mut d: Workload,
    until: Option<Instant>,
) -> (Option<Progress>, Option<String>) {
    let Some(until) = until else {
        return (None, None);
    };
    let (namespace, name) = d.key();
    let progress = loop {
        let p = health::progress(&d);
        let Progress::Progressing(what) = p else {
            break p;
        };
        if let Some(selector) = health::selector(&d) {
            match kube.pods(cluster, &namespace, &selector).await {
                Ok(pods) => {
                    if let Some(why) = health::pod_failure(&pods, &push.digest) {
                        break Progress::Failed(why);
                    }
                }
                Err(e) => {
                    warn!(cluster, namespace = %namespace, deployment = %name, error = %e, "pods not read")
                }
            }
        }
        if Instant::now() + config.poll_interval > until {
            break Progress::Failed(format!("not ready within the watch: {what}"));
        }
        tokio::time::sleep(config.poll_interval).await;
        match kube.get(cluster, d.kind, &namespace, &name).await {
            Ok(fresh) => d = fresh,
            Err(e) => break Progress::Progressing(format!("could not read it back: {e}")),
        }
    };
    let rolled_back = match &progress {
        Progress::Failed(why) if config.rollback_on_failure => {
            Some(roll_back(kube, cluster, push, &d, why).await)
        }
        _ => None,
    };
    (Some(progress), rolled_back)
}

async fn roll_back<K: Kube>(
    kube: &K,
    cluster: &str,
    push: &Push,
    w: &Workload,
    why: &str,
) -> String {
    let (namespace, name) = w.key();
    let (namespace, name) = (namespace.as_str(), name.as_str());
    let fresh = match kube.get(cluster, w.kind, namespace, name).await {
        Ok(d) => d,
        Err(e) => return format!("rollback failed: could not read it: {e}"),
    };
    let Some((ops, restored)) = health::rollback_patch(&fresh, push) else {
        return "no rollback: no earlier image recorded (a restart, or edited since)".into();
    };
    match kube.patch(cluster, w.kind, namespace, name, &ops).await {
        Ok(_) => {
            info!(
                cluster,
                namespace,
                deployment = name,
                reason = why,
                "rolled back"
            );
            format!("rolled back: {}", restored.join(", "))
        }
        Err(e) => format!("rollback failed: {e}"),
    }
}
