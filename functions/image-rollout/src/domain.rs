//! Pure decisions: which rules a push matches, which Deployments run the pushed image, and the
//! patch that rolls each one. No I/O; `kube.rs` reads the Deployments and applies the patches.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::image::{ImageRef, Push};
use crate::versions::{Order, Range, whole_tag};
use crate::workload::{Kind, RESTARTED_AT, Workload};

pub const OPT_ANNOTATION: &str = "bridgekeeper.io/rollout";
pub const DIGEST_ANNOTATION: &str = "bridgekeeper.io/image-digest";
/// Which tag each pinned container follows: `{"app": "latest"}`. Without it a container pinned
/// to a digest could not be told apart from one pinned by hand, or following another tag.
pub const TRACKED_ANNOTATION: &str = "bridgekeeper.io/tracked-tags";
/// The images containers ran before a pin, `{"app": "<image>"}`: what a rollback restores.
pub const PREVIOUS_ANNOTATION: &str = "bridgekeeper.io/previous-images";
/// A digest this workload was rolled back from: neither a redelivery nor the reconcile rolls it
/// again; the next push of the tag does.
pub const ROLLED_BACK_ANNOTATION: &str = "bridgekeeper.io/rolled-back-from";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Point the container at the pushed digest: a moving tag really pulls the new image.
    #[default]
    PinDigest,
    /// `kubectl rollout restart`: new pods, same image reference.
    Restart,
}

#[derive(Debug, Clone)]
pub enum TagPattern {
    Exact(String),
    Glob(glob::Pattern),
    /// A version range, read as Flux and Argo CD Image Updater read it.
    Semver(Range),
    /// A regular expression over the whole tag.
    Regex(regex::Regex),
}

impl TagPattern {
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TagPattern::Exact(t) => t == tag,
            TagPattern::Glob(p) => p.matches(tag),
            TagPattern::Semver(range) => range.matches(tag),
            TagPattern::Regex(re) => re.is_match(tag),
        }
    }
}

/// One rule as written in `ROLLOUT_RULES`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Repository name or glob: `shop/api`, `shop/*`.
    pub repository: String,
    /// Tag or glob: `latest`, `v*`. Exclusive with `semver`.
    #[serde(default)]
    pub tag: Option<String>,
    /// A semver range over tags (a leading `v` is ignored): `>=1.4, <2`.
    #[serde(default)]
    pub semver: Option<String>,
    /// Aliases from `CLUSTERS`.
    pub clusters: Vec<String>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Workloads Argo CD, Flux or Helm own: `leave` (default) or `patch`.
    #[serde(default)]
    pub gitops: crate::gitops::GitOps,
    /// A regular expression over tags, its first capture (or the whole match) ordered by
    /// `order`. Exclusive with `tag` and `semver`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// With `pattern`: `numerical` or `alphabetical`.
    #[serde(default)]
    pub order: Option<String>,
    /// With `semver` or `pattern`: move workloads on a lower version of the repository to the
    /// pushed one (never to a lower one), not only those on the pushed tag.
    #[serde(default)]
    pub bump: bool,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub repository: glob::Pattern,
    pub tag: TagPattern,
    pub clusters: Vec<String>,
    pub namespaces: Option<Vec<String>>,
    pub strategy: Strategy,
    pub gitops: crate::gitops::GitOps,
    pub bump: Option<Order>,
}

impl Rule {
    /// Checks one rule; the error says what is wrong with it (the caller adds which one).
    pub fn from_spec(spec: RuleSpec, known_clusters: &[String]) -> Result<Rule, String> {
        let repository = glob::Pattern::new(&spec.repository)
            .map_err(|e| format!("repository {:?}: {e}", spec.repository))?;
        let tag = match (spec.tag, spec.semver, &spec.pattern) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err("give one of tag, semver and pattern".into());
            }
            (None, None, None) => {
                return Err("give a tag (exact or glob), a semver range or a pattern".into());
            }
            (Some(t), None, None) if t.contains(['*', '?', '[']) => {
                TagPattern::Glob(glob::Pattern::new(&t).map_err(|e| format!("tag {t:?}: {e}"))?)
            }
            (Some(t), None, None) => TagPattern::Exact(t),
            (None, Some(r), None) => TagPattern::Semver(Range::parse(&r)?),
            (None, None, Some(p)) => TagPattern::Regex(whole_tag(p)?),
        };
        let order = match (&tag, spec.order.as_deref()) {
            (TagPattern::Semver(_), None) => Some(Order::Semver),
            (TagPattern::Regex(re), Some("numerical")) => Some(Order::Numerical(re.clone())),
            (TagPattern::Regex(re), Some("alphabetical")) => Some(Order::Alphabetical(re.clone())),
            (TagPattern::Regex(_), other) => {
                return Err(format!(
                    "a pattern needs order \"numerical\" or \"alphabetical\", not {other:?}"
                ));
            }
            (_, Some(_)) => return Err("order goes with a pattern".into()),
            (_, None) => None,
        };
        if spec.clusters.is_empty() {
            return Err("clusters is empty".into());
        }
        if spec.bump && order.is_none() {
            return Err(
                "bump moves workloads between versions: give a semver range or a pattern".into(),
            );
        }
        if let Some(unknown) = spec.clusters.iter().find(|c| !known_clusters.contains(c)) {
            return Err(format!(
                "cluster {unknown:?} is not in CLUSTERS ({})",
                known_clusters.join(", ")
            ));
        }
        Ok(Rule {
            repository,
            tag,
            clusters: spec.clusters,
            namespaces: spec.namespaces.filter(|n| !n.is_empty()),
            strategy: spec.strategy,
            gitops: spec.gitops,
            bump: order.filter(|_| spec.bump),
        })
    }

    pub fn matches(&self, repository: &str, tag: &str) -> bool {
        self.repository.matches(repository) && self.tag.matches(tag)
    }

    /// It rolls `repository:tag` in `cluster`.
    pub fn covers(&self, cluster: &str, repository: &str, tag: &str) -> bool {
        self.clusters.iter().any(|c| c == cluster) && self.matches(repository, tag)
    }
}

/// Where to look in one cluster, and how to roll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub cluster: String,
    /// `None`: all namespaces.
    pub namespaces: Option<Vec<String>>,
    pub strategy: Strategy,
    pub gitops: crate::gitops::GitOps,
    /// A matching rule moves workloads up between versions (`bump`), in this order.
    #[serde(skip)]
    pub bump: Option<Order>,
}

/// Kubernetes keeps the `kube-` prefix for its own namespaces ("Namespaces": "avoid creating
/// namespaces with the prefix kube-"); EKS add-ons install into `amazon-*` and `aws-*` ones
/// (amazon-cloudwatch, amazon-guardduty, aws-observability).
const SYSTEM_PREFIXES: [&str; 3] = ["kube-", "amazon-", "aws-"];

/// Why a workload in `namespace` is not rolled by `target`: a system namespace, unless a rule
/// lists it by name. A tenant who can push a tag a system workload also runs (a shared base
/// image, a mirrored add-on) must not be able to roll the cluster's own components.
pub fn system_namespace(namespace: &str, target: &Target) -> Option<String> {
    let system = SYSTEM_PREFIXES.iter().any(|p| namespace.starts_with(p));
    let listed = target
        .namespaces
        .as_ref()
        .is_some_and(|n| n.iter().any(|x| x == namespace));
    (system && !listed).then(|| {
        format!(
            "{namespace} is a system namespace: only a rule that lists it in namespaces rolls there"
        )
    })
}

/// The clusters a push goes to, in rule order; the first rule naming a cluster decides its
/// strategy, and namespaces of several rules add up.
pub fn targets(rules: &[Rule], push: &Push) -> Vec<Target> {
    let matching: Vec<Rule> = rules
        .iter()
        .filter(|r| r.matches(&push.repository, &push.tag))
        .cloned()
        .collect();
    all_targets(&matching)
}

/// The clusters (and namespaces) any rule rolls to: where the reconcile looks.
pub fn all_targets(rules: &[Rule]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for rule in rules {
        for cluster in &rule.clusters {
            match out.iter_mut().find(|t| &t.cluster == cluster) {
                Some(t) => {
                    t.namespaces = match (t.namespaces.take(), &rule.namespaces) {
                        (Some(mut a), Some(b)) => {
                            a.extend(
                                b.iter()
                                    .filter(|n| !a.contains(n))
                                    .cloned()
                                    .collect::<Vec<_>>(),
                            );
                            Some(a)
                        }
                        _ => None,
                    }
                }
                None => out.push(Target {
                    cluster: cluster.clone(),
                    namespaces: rule.namespaces.clone(),
                    strategy: rule.strategy,
                    gitops: rule.gitops,
                    bump: rule.bump.clone(),
                }),
            }
        }
    }
    out
}

/// An ECR image a workload follows: `(registry, repository, tag)`.
pub type Followed = (String, String, String);

/// The ECR tags the containers of these Deployments follow and some rule rolls in `cluster`:
/// a container's tag, the tag it was pinned for (`bridgekeeper.io/tracked-tags`), or `latest`
/// for an image named without either.
pub fn followed_tags(rules: &[Rule], cluster: &str, workloads: &[Workload]) -> Vec<Followed> {
    let mut out: Vec<Followed> = Vec::new();
    for d in workloads {
        let Some(pod) = d.template.spec.as_ref() else {
            continue;
        };
        let tracked = tracked_tags(&annotations(d.template.metadata.as_ref()));
        let containers = pod.init_containers.iter().flatten().chain(&pod.containers);
        for c in containers {
            let Some(r) = c.image.as_deref().and_then(ImageRef::parse) else {
                continue;
            };
            let Some(registry) = r.registry.filter(|h| Push::ecr_parts(h).is_some()) else {
                continue;
            };
            let tag = match (r.tag, r.digest) {
                (Some(t), _) => t,
                (None, Some(_)) => match tracked.get(&c.name) {
                    Some(t) => t.clone(),
                    None => continue,
                },
                (None, None) => "latest".to_owned(),
            };
            let rolled_here = rules
                .iter()
                .any(|rule| rule.covers(cluster, &r.repository, &tag));
            let key = (registry, r.repository, tag);
            if rolled_here && !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every matching Deployment, unless annotated `bridgekeeper.io/rollout: "false"`.
    OptOut,
    /// Only Deployments annotated `bridgekeeper.io/rollout: "true"`.
    OptIn,
}

/// A container that runs the pushed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedContainer {
    pub name: String,
    pub init: bool,
    pub index: usize,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Rollout {
    PinDigest {
        containers: Vec<MatchedContainer>,
        image: String,
    },
    Restart {
        containers: Vec<MatchedContainer>,
        restarted_at: String,
    },
}

/// What to do with one Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Does not run the pushed image: not reported.
    Unrelated,
    Skip(String),
    /// Left alone until a person acts (the report says why and what to do).
    Hold(String),
    Roll(Rollout),
}

pub fn annotations(
    meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> BTreeMap<String, String> {
    meta.and_then(|m| m.annotations.clone()).unwrap_or_default()
}

fn tracked_tags(template_annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    template_annotations
        .get(TRACKED_ANNOTATION)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// Containers (and init containers) running this repository at this tag, or pinned by us to a
/// digest while following this tag. With `bump`, also those on a lower version of the
/// repository (by their tag, or the tag they were pinned for): the rule's range chose the push;
/// the workload moves up to it.
pub fn matching_containers_for(
    d: &Workload,
    push: &Push,
    bump: Option<&Order>,
) -> Vec<MatchedContainer> {
    let Some(pod) = d.template.spec.as_ref() else {
        return vec![];
    };
    let tracked = tracked_tags(&annotations(d.template.metadata.as_ref()));
    let pushed_tag = push.tag.as_str();
    let init = pod
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (true, i, c));
    let main = pod
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (false, i, c));
    init.chain(main)
        .filter_map(|(is_init, index, c)| {
            let image = c.image.as_deref()?;
            let r = ImageRef::parse(image)?;
            if r.registry.as_deref() != Some(push.registry.as_str())
                || r.repository != push.repository
            {
                return None;
            }
            let follows =
                |tag: &str| tag == pushed_tag || bump.is_some_and(|o| o.newer(pushed_tag, tag));
            let follows = match (&r.tag, &r.digest) {
                (Some(tag), _) => follows(tag),
                (None, Some(_)) => tracked.get(&c.name).is_some_and(|t| follows(t)),
                (None, None) => pushed_tag == "latest",
            };
            follows.then(|| MatchedContainer {
                name: c.name.clone(),
                init: is_init,
                index,
                image: image.to_owned(),
            })
        })
        .collect()
}

/// What to do with one workload for one push, by the target's mode, strategy and version order.
pub fn decide_for(
    d: &Workload,
    push: &Push,
    (mode, strategy, bump): (Mode, Strategy, Option<&Order>),
    now: DateTime<Utc>,
) -> Decision {
    let containers = matching_containers_for(d, push, bump);
    if containers.is_empty() {
        return Decision::Unrelated;
    }
    let opt = annotations(Some(&d.metadata)).get(OPT_ANNOTATION).cloned();
    match (mode, opt.as_deref()) {
        (_, Some("false")) => {
            return Decision::Skip(format!("opted out ({OPT_ANNOTATION}: \"false\")"));
        }
        (Mode::OptIn, Some("true")) | (Mode::OptOut, _) => {}
        (Mode::OptIn, _) => {
            return Decision::Skip(format!(
                "not opted in ({OPT_ANNOTATION}: \"true\" is required)"
            ));
        }
    }
    let template = annotations(d.template.metadata.as_ref());
    if d.kind == Kind::CronJob && strategy == Strategy::Restart {
        return Decision::Skip(
            "a CronJob has nothing to restart: its next run starts new pods (use pin-digest)"
                .into(),
        );
    }
    if template.get(ROLLED_BACK_ANNOTATION) == Some(&push.digest) {
        return Decision::Skip(format!(
            "rolled back from {} after it failed; a new push of the tag rolls again",
            push.short_digest()
        ));
    }
    match strategy {
        Strategy::PinDigest => {
            let image = push.pinned_image();
            if containers.iter().all(|c| c.image == image) {
                return Decision::Skip(format!("already at {}", push.short_digest()));
            }
            // Pinned to this digest once (the annotation says so), running something else now:
            // someone, or a controller, set it back. Patching again would only start a loop.
            if template.get(DIGEST_ANNOTATION) == Some(&push.digest) {
                let now_runs: Vec<&str> = containers
                    .iter()
                    .filter(|c| c.image != image)
                    .map(|c| c.image.as_str())
                    .collect();
                return Decision::Hold(format!(
                    "set back to {} after Bridgekeeper pinned {} (a GitOps controller or a \
                     person undid it): not patched again, so the two never loop; remove \
                     {DIGEST_ANNOTATION} from its pod template to let it roll",
                    now_runs.join(", "),
                    push.short_digest()
                ));
            }
            Decision::Roll(Rollout::PinDigest { containers, image })
        }
        Strategy::Restart => {
            if template.get(DIGEST_ANNOTATION) == Some(&push.digest) {
                return Decision::Skip(format!("already restarted for {}", push.short_digest()));
            }
            Decision::Roll(Rollout::Restart {
                containers,
                restarted_at: rfc3339(now),
            })
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

impl Rollout {
    /// The JSON patch that carries it out. Every image change is guarded by a `test` of the
    /// container's name at that index and of the exact image it replaces, and the whole patch by
    /// the digest annotation it read (when there was one): a workload edited since it was read
    /// (another push of the tag rolled it meanwhile) fails the patch with a 422 instead of being
    /// moved back to an older digest.
    pub fn patch(&self, d: &Workload, push: &Push) -> Vec<Value> {
        let root = d.template_path();
        let mut ops = Vec::new();
        let template = annotations(d.template.metadata.as_ref());
        if let Some(seen) = template.get(DIGEST_ANNOTATION) {
            let path = format!(
                "{root}/metadata/annotations/{}",
                pointer_escape(DIGEST_ANNOTATION)
            );
            ops.push(json!({"op": "test", "path": path, "value": seen}));
        }
        let mut new_annotations: BTreeMap<String, String> = BTreeMap::new();
        new_annotations.insert(DIGEST_ANNOTATION.into(), push.digest.clone());
        match self {
            Rollout::PinDigest { containers, image } => {
                let mut tracked = tracked_tags(&template);
                let mut previous: BTreeMap<String, String> = BTreeMap::new();
                for c in containers {
                    previous.insert(c.name.clone(), c.image.clone());
                    let list = if c.init {
                        "initContainers"
                    } else {
                        "containers"
                    };
                    let base = format!("{root}/spec/{list}/{}", c.index);
                    ops.push(
                        json!({"op": "test", "path": format!("{base}/name"), "value": c.name}),
                    );
                    ops.push(
                        json!({"op": "test", "path": format!("{base}/image"), "value": c.image}),
                    );
                    ops.push(
                        json!({"op": "replace", "path": format!("{base}/image"), "value": image}),
                    );
                    tracked.insert(c.name.clone(), push.tag.clone());
                }
                new_annotations.insert(
                    TRACKED_ANNOTATION.into(),
                    serde_json::to_string(&tracked).expect("a map serializes"),
                );
                new_annotations.insert(
                    PREVIOUS_ANNOTATION.into(),
                    serde_json::to_string(&previous).expect("a map serializes"),
                );
            }
            Rollout::Restart { restarted_at, .. } => {
                new_annotations.insert(RESTARTED_AT.into(), restarted_at.clone());
            }
        }
        match d.template.metadata.as_ref() {
            None => ops.push(json!({"op": "add", "path": format!("{root}/metadata"), "value": {"annotations": new_annotations}})),
            Some(m) if m.annotations.is_none() => {
                ops.push(json!({"op": "add", "path": format!("{root}/metadata/annotations"), "value": new_annotations}))
            }
            Some(_) => {
                for (k, v) in new_annotations {
                    let path = format!("{root}/metadata/annotations/{}", pointer_escape(&k));
                    ops.push(json!({"op": "add", "path": path, "value": v}));
                }
            }
        }
        ops
    }

    pub fn containers(&self) -> &[MatchedContainer] {
        match self {
            Rollout::PinDigest { containers, .. } | Rollout::Restart { containers, .. } => {
                containers
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    /// The decisions of a rule that does not move versions.
    fn decide(
        d: &Workload,
        push: &Push,
        mode: Mode,
        strategy: Strategy,
        now: DateTime<Utc>,
    ) -> Decision {
        decide_for(d, push, (mode, strategy, None), now)
    }

    fn matching_containers(d: &Workload, push: &Push) -> Vec<MatchedContainer> {
        matching_containers_for(d, push, None)
    }

    const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    const DIGEST: &str = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd";

    fn push(tag: &str) -> Push {
        Push {
            registry: REGISTRY.into(),
            repository: "shop/api".into(),
            tag: tag.to_owned(),
            digest: DIGEST.into(),
        }
    }

    fn deployment(
        containers: Value,
        init: Value,
        template_annotations: Option<Value>,
        annotations: Value,
    ) -> Workload {
        let mut template = json!({"spec": {"containers": containers, "initContainers": init}});
        if let Some(a) = template_annotations {
            template["metadata"] = json!({"annotations": a});
        }
        Workload::from_json(json!({
            "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "shop", "annotations": annotations},
            "spec": {"selector": {}, "template": template}
        }))
        .unwrap()
    }

    fn simple(image: &str) -> Workload {
        deployment(
            json!([{"name": "app", "image": image}]),
            json!([]),
            None,
            json!({}),
        )
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
    }

    fn rule(json: Value) -> Rule {
        let spec: RuleSpec = serde_json::from_value(json).unwrap();
        Rule::from_spec(spec, &["dev".into(), "prod".into(), "staging".into()]).unwrap()
    }

    /// keel-hq/keel#823: a late event of an older version moved workloads down. With `bump` a
    /// workload moves up to a pushed version, and never down.
    #[test]
    fn a_workload_moves_up_to_a_pushed_version_and_never_down() {
        let on = |tag: &str| simple(&format!("{REGISTRY}/shop/api:{tag}"));
        let how = (Mode::OptOut, Strategy::PinDigest, Some(&Order::Semver));
        assert!(matches!(
            decide_for(&on("1.4.2"), &push("1.4.3"), how, now()),
            Decision::Roll(_)
        ));
        assert_eq!(
            decide_for(&on("1.4.3"), &push("1.4.1"), how, now()),
            Decision::Unrelated
        );
        // Pinned by Bridgekeeper while following 1.4.3: a later 1.4.1 leaves it there.
        let pinned = deployment(
            json!([{"name": "app", "image": format!("{REGISTRY}/shop/api@{DIGEST}")}]),
            json!([]),
            Some(json!({TRACKED_ANNOTATION: "{\"app\":\"1.4.3\"}"})),
            json!({}),
        );
        assert_eq!(
            decide_for(&pinned, &push("1.4.1"), how, now()),
            Decision::Unrelated
        );
        // Without bump, a workload on 1.4.2 is not another version's business.
        let fixed = (Mode::OptOut, Strategy::PinDigest, None);
        assert_eq!(
            decide_for(&on("1.4.2"), &push("1.4.3"), fixed, now()),
            Decision::Unrelated
        );
        // Build numbers, ordered as numbers, by a rule's pattern.
        let builds = Order::Numerical(whole_tag(r"build-([0-9]+)").unwrap());
        let by_build = (Mode::OptOut, Strategy::PinDigest, Some(&builds));
        assert!(matches!(
            decide_for(&on("build-99"), &push("build-100"), by_build, now()),
            Decision::Roll(_)
        ));
        assert_eq!(
            decide_for(&on("build-100"), &push("build-99"), by_build, now()),
            Decision::Unrelated
        );
        // A tag that is not a version never moves.
        assert_eq!(
            decide_for(&on("latest"), &push("1.4.3"), how, now()),
            Decision::Unrelated
        );
        let err = Rule::from_spec(
            serde_json::from_value(json!({"repository": "shop/api", "tag": "latest", "clusters": ["dev"], "bump": true}))
                .unwrap(),
            &["dev".to_owned()],
        )
        .unwrap_err();
        assert!(err.contains("semver"), "{err}");
    }

    #[test]
    fn an_image_set_back_after_it_was_pinned_is_held_not_patched_again() {
        let p = push("latest");
        // Bridgekeeper pinned this digest once; something put the tag back since.
        let d = deployment(
            json!([{"name": "app", "image": format!("{REGISTRY}/shop/api:latest")}]),
            json!([]),
            Some(json!({ DIGEST_ANNOTATION: p.digest })),
            json!({}),
        );
        let Decision::Hold(why) = decide(&d, &p, Mode::OptOut, Strategy::PinDigest, now()) else {
            panic!("expected a hold")
        };
        assert!(
            why.contains("set back to") && why.contains("not patched again"),
            "{why}"
        );
        // A newer push (another digest) rolls it as usual.
        let mut newer = push("latest");
        newer.digest = format!("sha256:{}", "e".repeat(64));
        assert!(matches!(
            decide(&d, &newer, Mode::OptOut, Strategy::PinDigest, now()),
            Decision::Roll(_)
        ));
    }

    #[test]
    fn rules_match_exact_glob_and_semver_tags() {
        let latest = rule(json!({"repository": "shop/*", "tag": "latest", "clusters": ["dev"]}));
        assert!(latest.matches("shop/api", "latest"));
        assert!(!latest.matches("shop/api", "stable"));
        assert!(!latest.matches("other/api", "latest"));
        let v = rule(json!({"repository": "shop/api", "tag": "v*", "clusters": ["staging"]}));
        assert!(v.matches("shop/api", "v1.4.2") && !v.matches("shop/api", "latest"));
        let range =
            rule(json!({"repository": "shop/api", "semver": ">=1.4, <2", "clusters": ["prod"]}));
        assert!(range.matches("shop/api", "v1.4.2"));
        assert!(range.matches("shop/api", "1.9.0"));
        assert!(!range.matches("shop/api", "2.0.0"));
        assert!(!range.matches("shop/api", "latest"));
    }

    #[test]
    fn targets_merge_rules_per_cluster() {
        let rules = [
            rule(
                json!({"repository": "shop/*", "tag": "latest", "clusters": ["dev"], "namespaces": ["shop"]}),
            ),
            rule(
                json!({"repository": "shop/api", "tag": "lat*", "clusters": ["dev", "staging"], "namespaces": ["api"], "strategy": "restart"}),
            ),
            rule(json!({"repository": "shop/*", "tag": "stable", "clusters": ["prod"]})),
        ];
        let t = targets(&rules, &push("latest"));
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            Target {
                cluster: "dev".into(),
                namespaces: Some(vec!["shop".into(), "api".into()]),
                strategy: Strategy::PinDigest,
                gitops: crate::gitops::GitOps::Leave,
                bump: None,
            }
        );
        assert_eq!(t[1].strategy, Strategy::Restart);
        assert!(targets(&rules, &push("v1")).is_empty());
    }

    #[test]
    fn only_this_registry_and_repository_match() {
        for image in [
            format!("{REGISTRY}/shop/api:latest"),
            format!("{REGISTRY}/shop/api"),
        ] {
            assert_eq!(
                matching_containers(&simple(&image), &push("latest")).len(),
                1,
                "{image}"
            );
        }
        for image in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/api:latest".to_owned(),
            "999999999999.dkr.ecr.eu-west-1.amazonaws.com/shop/api:latest".to_owned(),
            format!("{REGISTRY}/shop/api-worker:latest"),
            format!("{REGISTRY}/shop/api:stable"),
            "shop/api:latest".to_owned(),
            format!("{REGISTRY}/shop/api@{DIGEST}"),
        ] {
            assert!(
                matching_containers(&simple(&image), &push("latest")).is_empty(),
                "{image}"
            );
        }
    }

    #[test]
    fn init_containers_match_and_a_digest_pinned_by_us_follows_its_tag() {
        let d = deployment(
            json!([{"name": "app", "image": format!("{REGISTRY}/shop/api@sha256:old")}, {"name": "side", "image": "envoy:1"}]),
            json!([{"name": "migrate", "image": format!("{REGISTRY}/shop/api:latest")}]),
            Some(json!({TRACKED_ANNOTATION: "{\"app\":\"latest\"}"})),
            json!({}),
        );
        let m = matching_containers(&d, &push("latest"));
        let names: Vec<_> = m
            .iter()
            .map(|c| (c.name.as_str(), c.init, c.index))
            .collect();
        assert_eq!(names, [("migrate", true, 0), ("app", false, 0)]);
        let stable: Vec<_> = matching_containers(&d, &push("stable"))
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(stable.is_empty(), "{stable:?}");
    }

    #[test]
    fn pin_digest_plan_tests_the_container_name_and_the_image_it_replaces() {
        let d = simple(&format!("{REGISTRY}/shop/api:latest"));
        let p = push("latest");
        let Decision::Roll(r) = decide(&d, &p, Mode::OptOut, Strategy::PinDigest, now()) else {
            panic!()
        };
        assert_eq!(
            r.patch(&d, &p),
            vec![
                json!({"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "app"}),
                json!({"op": "test", "path": "/spec/template/spec/containers/0/image", "value": format!("{REGISTRY}/shop/api:latest")}),
                json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": format!("{REGISTRY}/shop/api@{DIGEST}")}),
                json!({"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {
                    DIGEST_ANNOTATION: DIGEST, TRACKED_ANNOTATION: "{\"app\":\"latest\"}",
                    PREVIOUS_ANNOTATION: format!("{{\"app\":\"{REGISTRY}/shop/api:latest\"}}")}}}),
            ]
        );
    }

    #[test]
    fn restart_plan_sets_restarted_at_and_the_digest_next_to_existing_annotations() {
        let d = deployment(
            json!([{"name": "app", "image": format!("{REGISTRY}/shop/api:latest")}]),
            json!([]),
            Some(json!({"team": "shop"})),
            json!({}),
        );
        let p = push("latest");
        let Decision::Roll(r) = decide(&d, &p, Mode::OptOut, Strategy::Restart, now()) else {
            panic!()
        };
        assert_eq!(
            r.patch(&d, &p),
            vec![
                json!({"op": "add", "path": "/spec/template/metadata/annotations/bridgekeeper.io~1image-digest", "value": DIGEST}),
                json!({"op": "add", "path": "/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt", "value": "2026-11-21T12:00:00Z"}),
            ]
        );
    }

    #[test]
    fn a_deployment_already_at_the_digest_is_skipped_for_either_strategy() {
        let pinned = deployment(
            json!([{"name": "app", "image": format!("{REGISTRY}/shop/api@{DIGEST}")}]),
            json!([]),
            Some(json!({TRACKED_ANNOTATION: "{\"app\":\"latest\"}", DIGEST_ANNOTATION: DIGEST})),
            json!({}),
        );
        let p = push("latest");
        assert!(
            matches!(decide(&pinned, &p, Mode::OptOut, Strategy::PinDigest, now()), Decision::Skip(r) if r.starts_with("already at 7f5b2640fe6f"))
        );
        let restarted = deployment(
            json!([{"name": "app", "image": format!("{REGISTRY}/shop/api:latest")}]),
            json!([]),
            Some(json!({DIGEST_ANNOTATION: DIGEST})),
            json!({}),
        );
        assert!(matches!(
            decide(&restarted, &p, Mode::OptOut, Strategy::Restart, now()),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn opt_out_and_opt_in_annotations_are_honoured() {
        let image = json!([{"name": "app", "image": format!("{REGISTRY}/shop/api:latest")}]);
        let p = push("latest");
        let out = deployment(
            image.clone(),
            json!([]),
            None,
            json!({OPT_ANNOTATION: "false"}),
        );
        assert!(
            matches!(decide(&out, &p, Mode::OptOut, Strategy::PinDigest, now()), Decision::Skip(r) if r.contains("opted out"))
        );
        let plain = deployment(image.clone(), json!([]), None, json!({}));
        assert!(
            matches!(decide(&plain, &p, Mode::OptIn, Strategy::PinDigest, now()), Decision::Skip(r) if r.contains("not opted in"))
        );
        let opted_in = deployment(image, json!([]), None, json!({OPT_ANNOTATION: "true"}));
        assert!(matches!(
            decide(&opted_in, &p, Mode::OptIn, Strategy::PinDigest, now()),
            Decision::Roll(_)
        ));
        assert_eq!(
            decide(
                &simple("nginx:1"),
                &p,
                Mode::OptOut,
                Strategy::PinDigest,
                now()
            ),
            Decision::Unrelated
        );
    }

    #[test]
    fn ecr_registry_hosts_give_account_and_region() {
        assert_eq!(
            Push::ecr_parts(REGISTRY),
            Some(("123456789012", "eu-west-1"))
        );
        for other in [
            "ghcr.io",
            "registry.example.com:5000",
            "12345.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
        ] {
            assert_eq!(Push::ecr_parts(other), None, "{other}");
        }
    }

    /// A workload kept slim by a listing plans exactly what the whole object plans: the same
    /// decision, the same JSON patch (paths, tests, annotations), for both strategies.
    #[test]
    fn a_slim_listing_plans_exactly_what_the_whole_object_does() {
        let env: Vec<Value> = (0..30)
            .map(|k| json!({"name": format!("V{k}"), "value": "x".repeat(50)}))
            .collect();
        for template_annotations in [
            None,
            Some(json!({"prometheus.io/scrape": "true"})),
            Some(
                json!({DIGEST_ANNOTATION: "sha256:old", TRACKED_ANNOTATION: "{\"app\":\"latest\"}", "other": "x"}),
            ),
        ] {
            let mut whole = deployment(
                json!([
                    {"name": "proxy", "image": "envoyproxy/envoy:v1.31", "env": env},
                    {"name": "app", "image": format!("{REGISTRY}/shop/api:latest"), "env": env,
                     "resources": {"limits": {"memory": "1Gi"}}}
                ]),
                json!([{"name": "migrate", "image": format!("{REGISTRY}/shop/api:latest")}]),
                template_annotations,
                json!({"kubectl.kubernetes.io/last-applied-configuration": "{...}", OPT_ANNOTATION: "true"}),
            );
            whole.metadata.managed_fields = Some(vec![Default::default(); 3]);
            let slim = whole.clone().slim();
            assert!(slim.metadata.managed_fields.is_none());
            for strategy in [Strategy::PinDigest, Strategy::Restart] {
                for mode in [Mode::OptIn, Mode::OptOut] {
                    let (a, b) = (
                        decide(&whole, &push("latest"), mode, strategy, now()),
                        decide(&slim, &push("latest"), mode, strategy, now()),
                    );
                    assert_eq!(a, b);
                    if let (Decision::Roll(a), Decision::Roll(b)) = (a, b) {
                        assert_eq!(
                            a.patch(&whole, &push("latest")),
                            b.patch(&slim, &push("latest"))
                        );
                    }
                }
            }
        }
    }
}
