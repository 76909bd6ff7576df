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
            kube_clusters: match env.optional("CLUSTERS") {
                Some(_) => bridgekeeper::cluster_target::targets_from_env(env, "CLUSTERS")?,
                None => Vec::new(),
            },
            silenced: env.choice(
                "SILENCED_ALARMS",
                &[("info", Silenced::Info), ("drop", Silenced::Drop)],
                Silenced::Info,
            )?,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const ALERTS: (&str, &str) = (
        "ALERTS_TOPIC_ARN",
        "arn:aws:sns:eu-west-1:123456789012:alerts",
    );

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
        ] {
            let env = Env::from_pairs([ALERTS, (var, value)]);
            assert_eq!(Config::from_env(&env).unwrap_err().var, var);
        }
    }
}
