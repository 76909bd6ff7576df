//! Pure: whether a GitOps controller owns a workload, and what to do instead of patching it.
//! A workload whose desired state lives in git is put back by its controller (Argo CD's
//! self-heal, Flux's next reconcile, the next `helm upgrade`): patching it starts a loop of
//! rollouts, or a rollout that silently never sticks. So by default such a workload is left
//! alone and the report says who owns it; a rule with `"gitops": "patch"` patches it anyway, for
//! a team that told its controller to ignore the image.

use serde::{Deserialize, Serialize};

use crate::workload::{OWNER_ANNOTATIONS, Workload};

/// Argo CD's instance label (`application.instanceLabelKey`, its default) and its tracking
/// annotation (the listing keeps it: `workload::OWNER_ANNOTATIONS`).
pub const ARGO_INSTANCE: &str = "argocd.argoproj.io/instance";
const ARGO_TRACKING: &str = OWNER_ANNOTATIONS[0];
/// Flux's kustomize-controller and helm-controller label what they apply.
const FLUX_KUSTOMIZATION: &str = "kustomize.toolkit.fluxcd.io/name";
const FLUX_HELM_RELEASE: &str = "helm.toolkit.fluxcd.io/name";
/// Helm marks what it installs (`app.kubernetes.io/managed-by: Helm`) with its release.
const HELM_RELEASE: &str = OWNER_ANNOTATIONS[1];

/// What a rule does with a workload a GitOps controller owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GitOps {
    /// Leave it alone and say who owns it.
    #[default]
    Leave,
    /// Patch it: its controller was told to ignore the image.
    Patch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    ArgoCd { application: String },
    FluxKustomization { name: String },
    FluxHelmRelease { name: String },
    Helm { release: String },
}

/// Flux first (its HelmReleases are Helm-labelled too), then Argo CD, then plain Helm.
pub fn owner(w: &Workload) -> Option<Owner> {
    let empty = std::collections::BTreeMap::new();
    let labels = w.metadata.labels.as_ref().unwrap_or(&empty);
    let annotations = w.metadata.annotations.as_ref().unwrap_or(&empty);
    if let Some(name) = labels.get(FLUX_KUSTOMIZATION) {
        return Some(Owner::FluxKustomization { name: name.clone() });
    }
    if let Some(name) = labels.get(FLUX_HELM_RELEASE) {
        return Some(Owner::FluxHelmRelease { name: name.clone() });
    }
    let tracked = annotations
        .get(ARGO_TRACKING)
        .and_then(|t| t.split_once(':'))
        .map(|(app, _)| app.to_owned());
    if let Some(application) = labels.get(ARGO_INSTANCE).cloned().or(tracked) {
        return Some(Owner::ArgoCd { application });
    }
    let helm = labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some("Helm");
    helm.then(|| Owner::Helm {
        release: annotations
            .get(HELM_RELEASE)
            .cloned()
            .unwrap_or_else(|| "(unnamed)".into()),
    })
}

/// Why a workload is left alone, with what to do instead; `None` when it may be patched.
pub fn held(w: &Workload, policy: GitOps) -> Option<String> {
    if policy == GitOps::Patch {
        return None;
    }
    let advice = match owner(w)? {
        Owner::ArgoCd { application } => format!(
            "managed by Argo CD application {application}: point it at the new digest (Argo CD \
             Image Updater, or the image in git), or add ignoreDifferences for the container \
             image to the application and \"gitops\": \"patch\" to the rule"
        ),
        Owner::FluxKustomization { name } => format!(
            "managed by Flux Kustomization {name}: point it at the new digest (Flux image \
             automation, or the image in git), or mark the field with kustomize.toolkit.fluxcd.io/ssa: \
             IfNotPresent and add \"gitops\": \"patch\" to the rule"
        ),
        Owner::FluxHelmRelease { name } => format!(
            "managed by Flux HelmRelease {name}: set the image through the release's values, or \
             add \"gitops\": \"patch\" to the rule if its drift detection ignores the image"
        ),
        Owner::Helm { release } => format!(
            "installed by Helm release {release}: the next helm upgrade puts its image back; set \
             it in the release's values, or add \"gitops\": \"patch\" to the rule"
        ),
    };
    Some(advice)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn workload(labels: serde_json::Value, annotations: serde_json::Value) -> Workload {
        let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
            "metadata": {"name": "api", "namespace": "shop", "labels": labels, "annotations": annotations},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "app", "image": "x"}]}}}
        }))
        .unwrap();
        Workload::from(d)
    }

    #[test]
    fn argo_cd_flux_and_helm_owners_are_recognised() {
        let cases = [
            (
                json!({"argocd.argoproj.io/instance": "shop"}),
                json!({}),
                "Argo CD application shop",
            ),
            (
                json!({}),
                json!({"argocd.argoproj.io/tracking-id": "shop-prod:apps/Deployment:shop/api"}),
                "Argo CD application shop-prod",
            ),
            (
                json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
                json!({}),
                "Flux Kustomization apps",
            ),
            (
                json!({"helm.toolkit.fluxcd.io/name": "api", "app.kubernetes.io/managed-by": "Helm"}),
                json!({"meta.helm.sh/release-name": "api"}),
                "Flux HelmRelease api",
            ),
            (
                json!({"app.kubernetes.io/managed-by": "Helm"}),
                json!({"meta.helm.sh/release-name": "shop-api"}),
                "Helm release shop-api",
            ),
        ];
        for (labels, annotations, says) in cases {
            let w = workload(labels, annotations);
            let why = held(&w, GitOps::Leave).unwrap();
            assert!(why.contains(says), "{why}");
            assert_eq!(held(&w, GitOps::Patch), None);
        }
    }

    #[test]
    fn a_workload_no_controller_owns_is_patched() {
        let w = workload(
            json!({"app": "api", "app.kubernetes.io/managed-by": "kubectl"}),
            json!({}),
        );
        assert_eq!(owner(&w), None);
        assert_eq!(held(&w, GitOps::Leave), None);
    }
}
