//! Pure: how a rollout is doing — `kubectl rollout status` from the Deployment, and what its new
//! pods say (image pull failures, crash loops) — and the patch that rolls a failed pin back.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{
    DIGEST_ANNOTATION, PREVIOUS_ANNOTATION, Push, ROLLED_BACK_ANNOTATION, annotations,
    pointer_escape,
};

/// How a rolled Deployment is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Progress {
    Succeeded,
    Failed(String),
    Progressing(String),
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Succeeded => f.write_str("rolled out"),
            Progress::Failed(why) => write!(f, "failed: {why}"),
            Progress::Progressing(what) => write!(f, "still progressing: {what}"),
        }
    }
}

/// `kubectl rollout status`, once: the new generation observed, every replica updated and
/// available; `ProgressDeadlineExceeded` is a failure.
pub fn progress(d: &Deployment) -> Progress {
    let generation = d.metadata.generation.unwrap_or(0);
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = &d.status else {
        return Progress::Progressing("no status yet".into());
    };
    let deadline = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(c) = deadline {
        return Progress::Failed(
            c.message
                .clone()
                .unwrap_or_else(|| "ProgressDeadlineExceeded".into()),
        );
    }
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Progressing("the new generation is not observed yet".into());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
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
    } else {
        Progress::Succeeded
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
pub fn selector(d: &Deployment) -> Option<String> {
    let labels = d.spec.as_ref()?.selector.match_labels.as_ref()?;
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
pub fn rollback_patch(d: &Deployment, push: &Push) -> Option<(Vec<Value>, Vec<String>)> {
    let template = d.spec.as_ref()?.template.clone();
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
            let base = format!("/spec/template/spec/{list}/{i}");
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
        "/spec/template/metadata/annotations/{}",
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
        let with = |status: Value| -> Deployment {
            serde_json::from_value(json!({"metadata": {"generation": 3}, "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": status})).unwrap()
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
}
