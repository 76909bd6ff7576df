//! Every workload kind a team runs, seen the same way: Deployments, StatefulSets, DaemonSets and
//! CronJobs each carry a pod template (a CronJob's under `spec.jobTemplate`) and, except the
//! CronJob, a rollout status.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// What `kubectl rollout restart` sets on the pod template; the restart strategy sets it too.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    CronJob,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::CronJob,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::CronJob => "CronJob",
        }
    }

    /// Where the pod template is, as a JSON pointer.
    pub fn template_path(self) -> &'static str {
        match self {
            Kind::CronJob => "/spec/jobTemplate/spec/template",
            _ => "/spec/template",
        }
    }
}

impl Kind {
    /// The kind of a Kubernetes type.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Kind {
        match K::kind(&()).as_ref() {
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "CronJob" => Kind::CronJob,
            _ => Kind::Deployment,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rollout status, in the terms `kubectl rollout status` uses for each kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Status {
    /// No status written yet.
    #[default]
    Unknown,
    Replicas {
        observed_generation: i64,
        want: i32,
        updated: i32,
        available: i32,
        total: i32,
        /// StatefulSet: the pods still on the old revision (`currentRevision != updateRevision`).
        old_revision: bool,
        /// Deployment: `ProgressDeadlineExceeded`'s message.
        deadline_exceeded: Option<String>,
    },
    Daemon {
        observed_generation: i64,
        desired: i32,
        updated: i32,
        available: i32,
    },
    /// A CronJob: nothing runs until its next schedule, which uses the new template.
    Scheduled,
}

/// A workload by name, in what a run reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    /// `shop/api` for a Deployment (the common case reads as before), `StatefulSet shop/db`
    /// otherwise.
    pub fn label(&self) -> String {
        let (namespace, name) = (&self.namespace, &self.name);
        match self.kind {
            Kind::Deployment => format!("{namespace}/{name}"),
            other => format!("{other} {namespace}/{name}"),
        }
    }

    /// Reports list workloads by namespace, then name.
    pub fn place(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub kind: Kind,
    pub metadata: ObjectMeta,
    pub template: PodTemplateSpec,
    /// `matchLabels`: how its pods are found.
    pub selector: Option<BTreeMap<String, String>>,
    pub status: Status,
}

/// Annotations that say a GitOps controller owns a workload (`gitops`): Argo CD's tracking
/// annotation (`application.resourceTrackingMethod: annotation`, `<app>:<group>/<kind>:<ns>/<name>`)
/// and Helm's release.
pub const OWNER_ANNOTATIONS: [&str; 2] = [
    "argocd.argoproj.io/tracking-id",
    "meta.helm.sh/release-name",
];

/// What a listing keeps of an annotation map: Bridgekeeper's own keys, the restart stamp, and
/// what says a GitOps controller owns it (`gitops`); `None` stays `None` (a JSON patch adds to an
/// existing map and creates a missing one).
fn ours(annotations: Option<BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    annotations.map(|a| {
        a.into_iter()
            .filter(|(k, _)| {
                k.starts_with("bridgekeeper.io/")
                    || k == RESTARTED_AT
                    || OWNER_ANNOTATIONS.contains(&k.as_str())
            })
            .collect()
    })
}

impl Workload {
    pub fn template_path(&self) -> &'static str {
        self.kind.template_path()
    }

    /// Only what the planners read, for a listing of thousands: name, namespace, labels,
    /// generation, creation time, Bridgekeeper's annotations, and each container's name and
    /// image at its index. Managed fields, `last-applied-configuration`, env, volumes and
    /// resources (~57 KB a workload, measured) are dropped; a workload about to be patched is
    /// read whole again (`get`).
    pub fn slim(self) -> Workload {
        let m = self.metadata;
        let metadata = ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: ours(m.annotations),
            generation: m.generation,
            creation_timestamp: m.creation_timestamp,
            ..ObjectMeta::default()
        };
        let container =
            |c: k8s_openapi::api::core::v1::Container| k8s_openapi::api::core::v1::Container {
                name: c.name,
                image: c.image,
                ..Default::default()
            };
        let template = PodTemplateSpec {
            metadata: self.template.metadata.map(|tm| ObjectMeta {
                annotations: ours(tm.annotations),
                ..ObjectMeta::default()
            }),
            spec: self
                .template
                .spec
                .map(|ps| k8s_openapi::api::core::v1::PodSpec {
                    containers: ps.containers.into_iter().map(container).collect(),
                    init_containers: ps
                        .init_containers
                        .map(|ics| ics.into_iter().map(container).collect()),
                    ..Default::default()
                }),
        };
        Workload {
            kind: self.kind,
            metadata,
            template,
            selector: self.selector,
            status: self.status,
        }
    }

    /// What outcomes and messages name it by.
    pub fn reference(&self) -> WorkloadRef {
        let (namespace, name) = self.key();
        WorkloadRef {
            kind: self.kind,
            namespace,
            name,
        }
    }

    /// (namespace, name): a workload's place in its cluster.
    pub fn key(&self) -> (String, String) {
        (
            self.metadata.namespace.clone().unwrap_or_default(),
            self.metadata.name.clone().unwrap_or_default(),
        )
    }

    pub fn generation(&self) -> i64 {
        self.metadata.generation.unwrap_or(0)
    }
}

impl From<Deployment> for Workload {
    fn from(d: Deployment) -> Self {
        let spec = d.spec.unwrap_or_default();
        let status = d.status.map_or(Status::Unknown, |s| Status::Replicas {
            observed_generation: s.observed_generation.unwrap_or(0),
            want: spec.replicas.unwrap_or(1),
            updated: s.updated_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            total: s.replicas.unwrap_or(0),
            old_revision: false,
            deadline_exceeded: s
                .conditions
                .iter()
                .flatten()
                .find(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
                .map(|c| {
                    c.message
                        .clone()
                        .unwrap_or_else(|| "ProgressDeadlineExceeded".into())
                }),
        });
        Workload {
            kind: Kind::Deployment,
            metadata: d.metadata,
            template: spec.template,
            selector: spec.selector.match_labels,
            status,
        }
    }
}

impl From<StatefulSet> for Workload {
    fn from(s: StatefulSet) -> Self {
        let spec = s.spec.unwrap_or_default();
        let status = s.status.map_or(Status::Unknown, |st| Status::Replicas {
            observed_generation: st.observed_generation.unwrap_or(0),
            want: spec.replicas.unwrap_or(1),
            updated: st.updated_replicas.unwrap_or(0),
            available: st.available_replicas.unwrap_or(0),
            total: st.replicas,
            old_revision: matches!(
                (&st.current_revision, &st.update_revision),
                (Some(c), Some(u)) if c != u
            ),
            deadline_exceeded: None,
        });
        Workload {
            kind: Kind::StatefulSet,
            metadata: s.metadata,
            template: spec.template,
            selector: spec.selector.match_labels,
            status,
        }
    }
}

impl From<DaemonSet> for Workload {
    fn from(d: DaemonSet) -> Self {
        let spec = d.spec.unwrap_or_default();
        let status = d.status.map_or(Status::Unknown, |s| Status::Daemon {
            observed_generation: s.observed_generation.unwrap_or(0),
            desired: s.desired_number_scheduled,
            updated: s.updated_number_scheduled.unwrap_or(0),
            available: s.number_available.unwrap_or(0),
        });
        Workload {
            kind: Kind::DaemonSet,
            metadata: d.metadata,
            template: spec.template,
            selector: spec.selector.match_labels,
            status,
        }
    }
}

impl From<CronJob> for Workload {
    fn from(c: CronJob) -> Self {
        let job = c.spec.map(|s| s.job_template).unwrap_or_default();
        Workload {
            kind: Kind::CronJob,
            metadata: c.metadata,
            template: job.spec.map(|s| s.template).unwrap_or_default(),
            selector: None,
            status: Status::Scheduled,
        }
    }
}

impl Workload {
    /// From an object's JSON by its `kind` (test doubles and fakes store JSON).
    pub fn from_json(v: serde_json::Value) -> Result<Workload, String> {
        let kind = v["kind"].as_str().unwrap_or_default().to_owned();
        let bad = |e: serde_json::Error| format!("{kind}: {e}");
        Ok(match kind.as_str() {
            "Deployment" => serde_json::from_value::<Deployment>(v).map_err(bad)?.into(),
            "StatefulSet" => serde_json::from_value::<StatefulSet>(v)
                .map_err(bad)?
                .into(),
            "DaemonSet" => serde_json::from_value::<DaemonSet>(v).map_err(bad)?.into(),
            "CronJob" => serde_json::from_value::<CronJob>(v).map_err(bad)?.into(),
            other => return Err(format!("not a workload kind: {other:?}")),
        })
    }
}
