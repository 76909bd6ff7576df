//! What a listing reads of each workload, and nothing more. An API server's page of 500
//! workloads carries managed fields, `last-applied-configuration`, env, volumes and probes
//! (50-70 KB of JSON each); parsed into the full Kubernetes types a page alone took ~360 MB
//! (`make scale`), more than the function has. These shadows name only the fields the planners
//! read, so serde skips the rest as it reads, and each object becomes a small [`Workload`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::workload::{Kind, Workload};

#[derive(Debug, Deserialize)]
pub struct Shadow {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    /// Small (counts and a few conditions): kept as it came, read by the kind's own type.
    #[serde(default)]
    status: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    generation: Option<i64>,
    creation_timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    replicas: Option<i32>,
    selector: Option<Value>,
    template: Option<Template>,
    job_template: Option<JobTemplate>,
}

#[derive(Debug, Deserialize)]
struct JobTemplate {
    spec: Option<JobSpec>,
}

#[derive(Debug, Deserialize)]
struct JobSpec {
    template: Option<Template>,
}

#[derive(Debug, Deserialize)]
struct Template {
    metadata: Option<TemplateMeta>,
    spec: Option<PodSpec>,
}

#[derive(Debug, Deserialize)]
struct TemplateMeta {
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
    init_containers: Option<Vec<Container>>,
}

#[derive(Debug, Deserialize)]
struct Container {
    name: String,
    image: Option<String>,
}

fn template_json(t: &Option<Template>) -> Value {
    match t {
        None => json!({}),
        Some(t) => {
            let containers = |cs: &[Container]| -> Vec<Value> {
                cs.iter()
                    .map(|c| json!({"name": c.name, "image": c.image}))
                    .collect()
            };
            let mut v = json!({});
            if let Some(m) = &t.metadata {
                v["metadata"] = json!({"annotations": m.annotations});
            }
            if let Some(s) = &t.spec {
                v["spec"] = json!({"containers": containers(&s.containers)});
                if let Some(ics) = &s.init_containers {
                    v["spec"]["initContainers"] = json!(containers(ics));
                }
            }
            v
        }
    }
}

impl Shadow {
    /// Whether any container runs an image from an ECR registry: the only images a rule can
    /// match. A workload of public images only (a proxy, a database, an agent) is dropped as
    /// it is read.
    pub fn runs_ecr_image(&self) -> bool {
        let pods = [
            self.spec.template.as_ref(),
            self.spec
                .job_template
                .as_ref()
                .and_then(|j| j.spec.as_ref())
                .and_then(|s| s.template.as_ref()),
        ];
        pods.into_iter()
            .flatten()
            .filter_map(|t| t.spec.as_ref())
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .filter_map(|c| c.image.as_deref())
            .any(|i| {
                i.split('/')
                    .next()
                    .is_some_and(|host| host.contains(".dkr.ecr."))
            })
    }

    /// The workload the planners see (then [`Workload::slim`]: Bridgekeeper's annotations only).
    pub fn into_workload(self, kind: Kind) -> Result<Workload, String> {
        let m = &self.metadata;
        let mut spec = json!({"replicas": self.spec.replicas, "selector": self.spec.selector.clone().unwrap_or(json!({}))});
        match kind {
            Kind::CronJob => {
                let template = self
                    .spec
                    .job_template
                    .as_ref()
                    .and_then(|j| j.spec.as_ref())
                    .map(|s| &s.template);
                spec = json!({"schedule": "", "jobTemplate": {"spec": {"template": template.map_or(json!({}), template_json)}}});
            }
            _ => spec["template"] = template_json(&self.spec.template),
        }
        let mut object = json!({
            "kind": kind.as_str(),
            "metadata": {
                "name": m.name, "namespace": m.namespace, "labels": m.labels,
                "annotations": m.annotations, "generation": m.generation,
                "creationTimestamp": m.creation_timestamp,
            },
            "spec": spec,
        });
        if let Some(status) = self.status {
            object["status"] = status;
        }
        Workload::from_json(object).map(Workload::slim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shadow reads what the full types read: the same workload, kind by kind.
    #[test]
    fn a_shadow_gives_the_workload_the_full_object_gives() {
        let registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let template = json!({
            "metadata": {"labels": {"app": "api"}, "annotations": {"bridgekeeper.io/image-digest": "sha256:x", "other": "y"}},
            "spec": {"initContainers": [{"name": "migrate", "image": format!("{registry}/shop/api:latest"), "env": [{"name": "A", "value": "b"}]}],
                "containers": [{"name": "app", "image": format!("{registry}/shop/api:latest"), "resources": {"limits": {"memory": "1Gi"}}}]}
        });
        let meta = json!({"name": "api", "namespace": "shop", "generation": 3, "labels": {"app": "api"},
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"bridgekeeper.io/rollout": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]});
        let objects = [
            (
                Kind::Deployment,
                json!({"kind": "Deployment", "metadata": meta, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": template},
                "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
                    "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]}}),
            ),
            (
                Kind::StatefulSet,
                json!({"kind": "StatefulSet", "metadata": meta, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "serviceName": "api", "template": template},
                "status": {"replicas": 2, "currentRevision": "a", "updateRevision": "b"}}),
            ),
            (
                Kind::DaemonSet,
                json!({"kind": "DaemonSet", "metadata": meta, "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": template},
                "status": {"currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3, "updatedNumberScheduled": 1}}),
            ),
            (
                Kind::CronJob,
                json!({"kind": "CronJob", "metadata": meta, "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}}),
            ),
        ];
        for (kind, object) in objects {
            let full = Workload::from_json(object.clone()).unwrap().slim();
            let shadow: Shadow = serde_json::from_value(object).unwrap();
            assert_eq!(shadow.into_workload(kind).unwrap(), full, "{kind}");
        }
    }
}
