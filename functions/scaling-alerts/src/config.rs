use bridgekeeper::config::{Arn, ConfigError, Env, environment};
use bridgekeeper::notify::SnsNotifier;

use crate::handler::Notifiers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    /// Plain text for mail and SMS.
    Text,
    /// The custom-notification JSON Amazon Q Developer in chat applications renders.
    Chat,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: String,
    pub topic_arn: Arn,
    pub errors_topic_arn: Option<Arn>,
    pub format: MessageFormat,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let format = env.choice(
            "MESSAGE_FORMAT",
            &[("text", MessageFormat::Text), ("chat", MessageFormat::Chat)],
            MessageFormat::Text,
        )?;
        Ok(Config {
            environment: environment(env),
            topic_arn: env.arn("ALERTS_TOPIC_ARN")?,
            errors_topic_arn: env.optional_arn("ERRORS_TOPIC_ARN")?,
            format,
        })
    }

    pub fn notifiers(&self, sns: aws_sdk_sns::Client) -> Notifiers<SnsNotifier> {
        let notifier = |arn: &Arn| {
            SnsNotifier::new(
                sns.clone(),
                arn.as_str(),
                crate::FUNCTION,
                &self.environment,
            )
        };
        Notifiers {
            all: notifier(&self.topic_arn),
            errors: self.errors_topic_arn.as_ref().map(notifier),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_topics_and_format() {
        let env = Env::from_pairs([
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            (
                "ERRORS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:pager",
            ),
            ("MESSAGE_FORMAT", "chat"),
            ("ENVIRONMENT", "prod"),
        ]);
        let c = Config::from_env(&env).unwrap();
        assert_eq!(c.format, MessageFormat::Chat);
        assert_eq!(c.errors_topic_arn.unwrap().resource(), "pager");
        assert_eq!(c.environment, "prod");
    }

    #[test]
    fn bad_or_missing_values_name_the_variable() {
        assert_eq!(
            Config::from_env(&Env::default()).unwrap_err().var,
            "ALERTS_TOPIC_ARN"
        );
        let env = Env::from_pairs([
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("MESSAGE_FORMAT", "html"),
        ]);
        assert_eq!(Config::from_env(&env).unwrap_err().var, "MESSAGE_FORMAT");
        let env = Env::from_pairs([
            (
                "ALERTS_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:alerts",
            ),
            ("ERRORS_TOPIC_ARN", "pager"),
        ]);
        assert_eq!(Config::from_env(&env).unwrap_err().var, "ERRORS_TOPIC_ARN");
    }
}
