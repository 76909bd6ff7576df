use bridgekeeper::accounts::Admitted;
use bridgekeeper::config::{Arn, ConfigError, Env, environment};
use bridgekeeper::notify::{Destinations, SnsNotifier};

use crate::delivery::Notifiers;

/// What to do with an alarm change whose own actions CloudWatch muted or suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silenced {
    /// Sent at info severity (never to the errors topic), saying why.
    Info,
    /// Not sent; counted.
    Drop,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    /// The accounts whose events it reports (the hub's and `MEMBER_ACCOUNTS`).
    pub admitted: Admitted,
    /// The alerts topic (every alert, text) and the chat topic (every alert, chat JSON).
    pub topics: Destinations,
    /// `ERRORS_TOPIC_ARN`: error-severity alerts also go here.
    pub errors_topic_arn: Option<Arn>,
    /// `CLUSTER_NAMES`: EC2 events count only for nodes of these clusters; empty = any cluster
    /// an instance's EKS tags name.
    pub clusters: Vec<String>,
    pub silenced: Silenced,
    /// The clusters whose Events a scheduled run reads (`CLUSTERS`, alias=EKS name or URL);
    /// empty when the cluster's own story is not read.
    pub kube_clusters: Vec<(String, bridgekeeper::cluster_target::ClusterTarget)>,
    /// `FOLLOW_UP_QUEUE_URL`: the function's own queue, where it sends itself the follow-ups of
    /// node-group updates; unset, updates are reported as they start and not followed.
    pub follow_up_queue: Option<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        if env.optional("MESSAGE_FORMAT").is_some() {
            // Chat JSON on the alerts topic is what mail subscribers could not read.
            return Err(ConfigError::new(
                "MESSAGE_FORMAT",
                "is no longer read: set CHAT_TOPIC_ARN to send the chat format to its own topic",
            ));
        }
        Ok(Config {
            admitted: Admitted::from_env(env)?,
            environment: environment(env),
            topics: Destinations::from_env(env, crate::FUNCTION)?,
            errors_topic_arn: env.optional_arn("ERRORS_TOPIC_ARN")?,
            clusters: env.list("CLUSTER_NAMES"),
            kube_clusters: kube_clusters(env)?,
            follow_up_queue: follow_up_queue(env)?,
            silenced: env.choice(
                "SILENCED_ALARMS",
                &[("info", Silenced::Info), ("drop", Silenced::Drop)],
                Silenced::Info,
            )?,
        })
    }

    pub fn cluster_events(&self) -> bool {
        !self.kube_clusters.is_empty()
    }

    pub fn notifiers(&self, sns: aws_sdk_sns::Client) -> Notifiers<SnsNotifier> {
        let topic = |arn: &Arn| self.topics.topic(&sns, arn);
        Notifiers {
            all: topic(&self.topics.alerts),
            errors: self.errors_topic_arn.as_ref().map(topic),
            chat: self.topics.chat.as_ref().map(topic),
        }
    }
}

/// `FOLLOW_UP_QUEUE_URL`, said at init when unset: updates then go unfollowed.
fn follow_up_queue(env: &Env) -> Result<Option<String>, ConfigError> {
    let url = env.optional_queue_url("FOLLOW_UP_QUEUE_URL")?;
    if url.is_none() {
        tracing::info!(
            "FOLLOW_UP_QUEUE_URL is not set: node-group updates are told as they start, not followed to their end"
        );
    }
    Ok(url)
}

/// The clusters whose Events a scheduled run reads: `CLUSTERS` (alias=target, as dns-sync and
/// image-rollout read it; a local run against kmock), else with `CLUSTER_EVENTS=true` the EKS
/// clusters the stack granted: this account's (`EKS_CLUSTERS`) and member accounts' by ARN
/// (`MEMBER_CLUSTERS`, read through the member role), each under its cluster name — the name
/// EC2's tags give its nodes, which the Karpenter join matches on.
fn kube_clusters(
    env: &Env,
) -> Result<Vec<(String, bridgekeeper::cluster_target::ClusterTarget)>, ConfigError> {
    use bridgekeeper::cluster_target::{ClusterTarget, targets_from_env};
    if env.optional("CLUSTERS").is_some() {
        return targets_from_env(env, "CLUSTERS");
    }
    if !env.flag("CLUSTER_EVENTS", false)? {
        return Ok(Vec::new());
    }
    let mut out: Vec<(String, ClusterTarget)> = env
        .list("EKS_CLUSTERS")
        .into_iter()
        .map(|n| (n.clone(), ClusterTarget::eks(n)))
        .collect();
    for arn in env.list("MEMBER_CLUSTERS") {
        let target: ClusterTarget = arn
            .parse()
            .map_err(|why: String| ConfigError::new("MEMBER_CLUSTERS", why))?;
        let ClusterTarget::Eks { name, .. } = &target else {
            return Err(ConfigError::new(
                "MEMBER_CLUSTERS",
                format!("{arn:?} is not an EKS cluster ARN"),
            ));
        };
        if !arn.starts_with("arn:") {
            return Err(ConfigError::new(
                "MEMBER_CLUSTERS",
                format!("{arn:?} is a name: a member account's cluster is given by its ARN"),
            ));
        }
        if out.iter().any(|(alias, _)| alias == name) {
            return Err(ConfigError::new(
                "MEMBER_CLUSTERS",
                format!(
                    "two clusters are named {name:?}: messages and the Karpenter join tell clusters apart by name"
                ),
            ));
        }
        out.push((name.clone(), target));
    }
    if out.is_empty() {
        return Err(ConfigError::new(
            "CLUSTER_EVENTS",
            "is true, and neither EKS_CLUSTERS nor MEMBER_CLUSTERS names a cluster to read",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERTS: (&str, &str) = (
        "ALERTS_TOPIC_ARN",
        "arn:aws:sns:eu-west-1:123456789012:alerts",
    );

    #[test]
    fn cluster_events_read_the_granted_eks_clusters_or_say_what_is_missing() {
        let on = |eks: &'static str| {
            Config::from_env(&Env::from_pairs([
                ALERTS,
                ("CLUSTER_EVENTS", "true"),
                ("EKS_CLUSTERS", eks),
            ]))
        };
        let c = on("prod-eks,ops-eks").unwrap();
        let aliases: Vec<&str> = c.kube_clusters.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(aliases, ["prod-eks", "ops-eks"]);
        assert!(
            on("")
                .unwrap_err()
                .to_string()
                .contains("neither EKS_CLUSTERS nor MEMBER_CLUSTERS names a cluster")
        );
        let off =
            Config::from_env(&Env::from_pairs([ALERTS, ("CLUSTER_EVENTS", "false")])).unwrap();
        assert!(!off.cluster_events());
    }

    /// A member account's cluster is read through that account's role (its scope), under its
    /// name; a name, a URL or a second cluster of the same name is refused at init.
    #[test]
    fn member_clusters_are_read_by_arn_in_their_account_under_their_name() {
        use bridgekeeper::accounts::Scope;
        use bridgekeeper::cluster_target::ClusterTarget;
        let with = |members: &'static str| {
            Config::from_env(&Env::from_pairs([
                ALERTS,
                ("CLUSTER_EVENTS", "true"),
                ("EKS_CLUSTERS", "prod-eks"),
                ("MEMBER_CLUSTERS", members),
            ]))
        };
        let c = with("arn:aws:eks:eu-central-1:222222222222:cluster/staging-eks").unwrap();
        assert_eq!(
            c.kube_clusters[1],
            (
                "staging-eks".to_owned(),
                ClusterTarget::Eks {
                    name: "staging-eks".into(),
                    scope: Scope::account("222222222222").in_region("eu-central-1"),
                }
            )
        );
        for (bad, says) in [
            (
                "staging-eks",
                "a member account's cluster is given by its ARN",
            ),
            ("https://10.0.0.1:6443", "is not an EKS cluster ARN"),
            (
                "arn:aws:eks:eu-west-1:222222222222:cluster/prod-eks",
                "two clusters are named",
            ),
            ("arn:aws:s3:::bucket", "is not an EKS cluster ARN"),
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.var, "MEMBER_CLUSTERS");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn reads_topics_clusters_and_the_silenced_policy() {
        let env = Env::from_pairs([
            ALERTS,
            (
                "ERRORS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:pager",
            ),
            ("CHAT_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:chat"),
            ("CLUSTER_NAMES", "prod-eks, ops-eks"),
            ("SILENCED_ALARMS", "drop"),
            ("ENVIRONMENT", "prod"),
        ]);
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.errors_topic_arn.unwrap().resource(), "pager");
        assert_eq!(c.topics.chat.unwrap().resource(), "chat");
        assert_eq!(c.clusters, ["prod-eks", "ops-eks"]);
        assert_eq!(c.silenced, Silenced::Drop);
        assert_eq!(c.environment, "prod");
        let defaults = Config::from_env(&Env::from_pairs([ALERTS])).unwrap();
        assert_eq!(defaults.silenced, Silenced::Info);
        assert!(defaults.clusters.is_empty() && defaults.topics.chat.is_none());
    }

    #[test]
    fn bad_or_missing_values_name_the_variable() {
        assert_eq!(
            Config::from_env(&Env::default()).unwrap_err().var,
            "ALERTS_TOPIC_ARN"
        );
        for (var, value) in [
            ("MESSAGE_FORMAT", "chat"),
            ("ERRORS_TOPIC_ARN", "pager"),
            ("CHAT_TOPIC_ARN", "chat"),
            ("SILENCED_ALARMS", "quiet"),
            (
                "FOLLOW_UP_QUEUE_URL",
                "arn:aws:sqs:eu-west-1:123456789012:scaling",
            ),
        ] {
            let env = Env::from_pairs([ALERTS, (var, value)]);
            assert_eq!(Config::from_env(&env).unwrap_err().var, var);
        }
    }
}
