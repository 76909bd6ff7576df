//! Pure: how a rollout is doing — `kubectl rollout status` from the Deployment, and what its new
//! pods say (image pull failures, crash loops) — and the patch that rolls a failed pin back.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{
    DIGEST_ANNOTATION, PREVIOUS_ANNOTATION, ROLLED_BACK_ANNOTATION, annotations, pointer_escape,
};
use crate::image::Push;
use crate::workload::{Status, Workload};

/// How a rolled Deployment is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Progress {
    Succeeded,
    Failed(String),
    Progressing(String),
    /// A CronJob: its next run uses the new template.
    NextRun,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Succeeded => f.write_str("rolled out"),
            Progress::Failed(why) => write!(f, "failed: {why}"),
            Progress::Progressing(what) => write!(f, "still progressing: {what}"),
            Progress::NextRun => f.write_str("its next run uses it"),
        }
    }
}

/// `kubectl rollout status`, once, for the workload's kind: the new generation observed, every
/// replica (or scheduled daemon pod) updated and available; `ProgressDeadlineExceeded` fails.
pub fn progress(w: &Workload) -> Progress {
    let generation = w.generation();
    match &w.status {
        Status::Unknown => Progress::Progressing("no status yet".into()),
        Status::Scheduled => Progress::NextRun,
        Status::Replicas {
            deadline_exceeded: Some(message),
            ..
        } => Progress::Failed(message.clone()),
        Status::Replicas {
            observed_generation,
            ..
        }
        | Status::Daemon {
            observed_generation,
            ..
        } if *observed_generation < generation => {
            Progress::Progressing("the new generation is not observed yet".into())
        }
        Status::Replicas {
            want,
            updated,
            available,
            total,
            old_revision,
            ..
        } => {
            if updated < want {
                Progress::Progressing(format!("{updated} of {want} replicas updated"))
            } else if total > updated {
                Progress::Progressing(format!(
                    "{} old replicas pending termination",
                    total - updated
                ))
            } else if available < updated {
                Progress::Progressing(format!(
                    "{available} of {updated} updated replicas available"
                ))
            } else if *old_revision {
                Progress::Progressing("pods still on the old revision".into())
            } else {
                Progress::Succeeded
            }
        }
        Status::Daemon {
            desired,
            updated,
            available,
            ..
        } => {
            if updated < desired {
                Progress::Progressing(format!("{updated} of {desired} nodes updated"))
            } else if available < desired {
                Progress::Progressing(format!("{available} of {desired} nodes available"))
            } else {
                Progress::Succeeded
            }
        }
    }
}

/// Container states that will not fix themselves: a new pod in one of them means the rollout
/// failed, whatever `progressDeadlineSeconds` (10 minutes by default) will say later.
const STUCK: [&str; 7] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// `app=api,tier=web`: the Deployment's `matchLabels`, to list its pods.
pub fn selector(d: &Workload) -> Option<String> {
    let labels = d.selector.as_ref()?;
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Why the new pods (those stamped with the rolled digest) cannot run, naming the pod, the
/// container and the reason; `None` while nothing says so.
pub fn pod_failure(pods: &[Pod], digest: &str) -> Option<String> {
    let mut found = Vec::new();
    for pod in pods {
        let is_new = annotations(Some(&pod.metadata))
            .get(DIGEST_ANNOTATION)
            .is_some_and(|d| d == digest);
        let Some(status) = pod.status.as_ref().filter(|_| is_new) else {
            continue;
        };
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for c in statuses {
            let Some(waiting) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if STUCK.contains(&reason) {
                let message = waiting
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                found.push(format!(
                    "pod {} container {}: {reason}{message}",
                    pod.metadata.name.as_deref().unwrap_or("?"),
                    c.name
                ));
            }
        }
    }
    found.sort();
    let more = found.len().saturating_sub(1);
    found.into_iter().next().map(|first| match more {
        0 => first,
        n => format!("{first} (and {n} more)"),
    })
}

/// The patch that re-pins the images recorded before `push` was pinned, guarded by the container
/// names and the pinned image; `None` when nothing was recorded (a restart, or a hand edit since).
pub fn rollback_patch(d: &Workload, push: &Push) -> Option<(Vec<Value>, Vec<String>)> {
    let template = d.template.clone();
    let root = d.template_path();
    let template_annotations = annotations(template.metadata.as_ref());
    let previous: BTreeMap<String, String> = template_annotations
        .get(PREVIOUS_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())?;
    let pod = template.spec?;
    let pinned = push.pinned_image();
    let mut ops = Vec::new();
    let mut restored = Vec::new();
    let lists = [
        ("initContainers", pod.init_containers.unwrap_or_default()),
        ("containers", pod.containers),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.iter().enumerate() {
            let Some(before) = previous.get(&c.name) else {
                continue;
            };
            if c.image.as_deref() != Some(pinned.as_str()) {
                continue;
            }
            let base = format!("{root}/spec/{list}/{i}");
            ops.push(json!({"op": "test", "path": format!("{base}/name"), "value": c.name}));
            ops.push(json!({"op": "test", "path": format!("{base}/image"), "value": pinned}));
            ops.push(json!({"op": "replace", "path": format!("{base}/image"), "value": before}));
            restored.push(format!("{} back to {before}", c.name));
        }
    }
    if ops.is_empty() {
        return None;
    }
    let path = format!(
        "{root}/metadata/annotations/{}",
        pointer_escape(ROLLED_BACK_ANNOTATION)
    );
    ops.push(json!({"op": "add", "path": path, "value": push.digest}));
    Some((ops, restored))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd";

    fn pod(name: &str, digest: &str, waiting: Option<(&str, &str)>) -> Pod {
        let state = match waiting {
            Some((reason, message)) => json!({"waiting": {"reason": reason, "message": message}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {DIGEST_ANNOTATION: digest}},
            "status": {"containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": state}]}
        }))
        .unwrap()
    }

    #[test]
    fn progress_reads_like_kubectl_rollout_status() {
        let with = |status: Value| -> Workload {
            Workload::from_json(json!({"kind": "Deployment", "metadata": {"generation": 3}, "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": status})).unwrap()
        };
        assert_eq!(
            progress(&with(
                json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2})
            )),
            Progress::Succeeded
        );
        assert!(matches!(
            progress(&with(json!({"observedGeneration": 2}))),
            Progress::Progressing(_)
        ));
        assert!(
            matches!(progress(&with(json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}))), Progress::Progressing(w) if w.contains("old replicas"))
        );
        let stuck = with(
            json!({"observedGeneration": 3, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"api-7d\" has timed out progressing."}]}),
        );
        assert_eq!(
            progress(&stuck),
            Progress::Failed("ReplicaSet \"api-7d\" has timed out progressing.".into())
        );
    }

    #[test]
    fn a_new_pod_that_cannot_pull_or_keeps_crashing_is_a_failure_with_its_reason() {
        let pulling = pod(
            "api-7d9-x1",
            DIGEST,
            Some(("ImagePullBackOff", "Back-off pulling image")),
        );
        let old = pod(
            "api-5c4-y2",
            "sha256:old",
            Some(("CrashLoopBackOff", "old pods are not ours")),
        );
        let fine = pod("api-7d9-x2", DIGEST, None);
        assert_eq!(
            pod_failure(&[old.clone(), fine.clone(), pulling], DIGEST).as_deref(),
            Some("pod api-7d9-x1 container app: ImagePullBackOff: Back-off pulling image")
        );
        assert_eq!(pod_failure(&[old, fine.clone()], DIGEST), None);
        let starting = pod("api-7d9-x3", DIGEST, Some(("ContainerCreating", "")));
        assert_eq!(
            pod_failure(&[fine, starting], DIGEST),
            None,
            "still starting is not a failure"
        );
        let crash = pod(
            "api-7d9-x4",
            DIGEST,
            Some(("CrashLoopBackOff", "back-off 10s")),
        );
        let config = pod(
            "api-7d9-x5",
            DIGEST,
            Some(("CreateContainerConfigError", "secret \"db\" not found")),
        );
        let both = pod_failure(&[crash, config], DIGEST).unwrap();
        assert!(
            both.starts_with("pod api-7d9-x4 container app: CrashLoopBackOff")
                && both.ends_with("(and 1 more)"),
            "{both}"
        );
    }

    #[test]
    fn statefulsets_daemonsets_and_cronjobs_report_progress_in_their_own_terms() {
        let sts = |status: Value| {
            Workload::from_json(json!({"kind": "StatefulSet", "metadata": {"generation": 2},
                "spec": {"replicas": 3, "serviceName": "db", "selector": {}, "template": {}}, "status": status}))
            .unwrap()
        };
        assert_eq!(
            progress(&sts(
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                "currentRevision": "db-1", "updateRevision": "db-1"})
            )),
            Progress::Succeeded
        );
        assert_eq!(
            progress(&sts(
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3,
                "currentRevision": "db-1", "updateRevision": "db-2"})
            )),
            Progress::Progressing("pods still on the old revision".into())
        );
        let ds = |status: Value| {
            Workload::from_json(json!({"kind": "DaemonSet", "metadata": {"generation": 4},
                "spec": {"selector": {}, "template": {}}, "status": status}))
            .unwrap()
        };
        let base = json!({"observedGeneration": 4, "currentNumberScheduled": 5, "numberMisscheduled": 0,
            "desiredNumberScheduled": 5, "numberReady": 5});
        let mut done = base.clone();
        done["updatedNumberScheduled"] = json!(5);
        done["numberAvailable"] = json!(5);
        assert_eq!(progress(&ds(done)), Progress::Succeeded);
        let mut halfway = base;
        halfway["updatedNumberScheduled"] = json!(2);
        assert_eq!(
            progress(&ds(halfway)),
            Progress::Progressing("2 of 5 nodes updated".into())
        );
        let cron = Workload::from_json(json!({"kind": "CronJob", "metadata": {},
            "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {}}}}}))
        .unwrap();
        assert_eq!(progress(&cron), Progress::NextRun);
    }
}
