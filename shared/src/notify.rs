//! Notifications for people: a short subject, a readable body, and message attributes that SNS
//! subscription filter policies can match (`{"severity": ["error"]}`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use aws_sdk_sns::types::MessageAttributeValue;
use tracing::info;

use crate::classify::{AwsError, SdkResultExt};
use crate::config::{Arn, ConfigError, Env, environment};

/// SNS Publish: the subject "must be fewer than 100 characters" (SNS API reference), so 99.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// SNS rejects a message over 256 KiB, counted in UTF-8 bytes; the message attributes count
/// toward the same limit, so the body keeps 4 KiB for them.
pub const MAX_BODY_BYTES: usize = 256 * 1024 - 4 * 1024;
/// How much of a body the chat copy carries.
pub const MAX_CHAT_BODY_BYTES: usize = 16 * 1024;
/// SNS accepts at most 10 message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Resolved,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Resolved => "resolved",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub subject: String,
    pub body: String,
    pub severity: Severity,
    /// Extra attributes (`cluster`, `group`, ...); `severity`, `function` and `environment` are
    /// added by the notifier.
    pub attributes: BTreeMap<String, String>,
    /// Attributes whose value is a JSON array, sent as SNS `String.Array`: a subscription filter
    /// `{"cluster": ["prod"]}` matches a message for `["dev", "prod"]`.
    pub arrays: std::collections::BTreeSet<String>,
    /// What only the chat copy carries (Amazon Q Developer's custom-notification fields).
    pub chat: Chat,
}

/// The custom-notification fields beyond title and text ("Custom notifications", Amazon Q
/// Developer in chat applications: `threadId`, `keywords`, `eventType`, `nextSteps`,
/// `relatedResources`). Every value is rendered inert like the rest of the chat copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chat {
    /// Messages with one thread id land in one thread: an alarm's ALARM and its OK.
    pub thread: Option<String>,
    pub event_type: Option<String>,
    pub keywords: Vec<String>,
    /// What a person runs or opens next, one line each.
    pub next_steps: Vec<String>,
    /// The resources the message is about (instance ids, ARNs).
    pub related: Vec<String>,
}

/// The custom-notification schema's bounds Bridgekeeper keeps to (a chat message is read, not
/// searched): a few keywords, steps and resources.
const MAX_CHAT_LIST: usize = 5;

impl Notification {
    pub fn new(subject: impl AsRef<str>, body: impl Into<String>, severity: Severity) -> Self {
        Notification {
            subject: subject_line(subject.as_ref()),
            body: truncate_bytes(body.into(), MAX_BODY_BYTES),
            severity,
            attributes: BTreeMap::new(),
            arrays: std::collections::BTreeSet::new(),
            chat: Chat::default(),
        }
    }

    /// The chat thread this message belongs to: a stable id for one story (an alarm, a
    /// rollout). Kept to letters, digits and `-_.:/` so no sender's text shapes it.
    pub fn thread(mut self, id: impl AsRef<str>) -> Self {
        let id: String = id
            .as_ref()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(*c))
            .take(256)
            .collect();
        self.chat.thread = (!id.is_empty()).then_some(id);
        self
    }

    /// What kind of event this is, for chat (`ALARM`, `ImagePushed`).
    pub fn event_type(mut self, t: impl Into<String>) -> Self {
        self.chat.event_type = Some(t.into());
        self
    }

    pub fn keyword(mut self, k: impl Into<String>) -> Self {
        if self.chat.keywords.len() < MAX_CHAT_LIST {
            self.chat.keywords.push(k.into());
        }
        self
    }

    /// A command or console page a person goes to next.
    pub fn next_step(mut self, step: impl Into<String>) -> Self {
        if self.chat.next_steps.len() < MAX_CHAT_LIST {
            self.chat.next_steps.push(step.into());
        }
        self
    }

    pub fn related(mut self, resource: impl Into<String>) -> Self {
        if self.chat.related.len() < MAX_CHAT_LIST {
            self.chat.related.push(resource.into());
        }
        self
    }

    /// A `String.Array` attribute (SNS filter policies match any of its values).
    pub fn array_attribute<I, S>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let name = name.into();
        let values: Vec<String> = values
            .into_iter()
            .map(Into::into)
            .filter(|v| !v.is_empty())
            .collect();
        if !values.is_empty() && valid_attribute_name(&name) {
            let json = serde_json::to_string(&values).expect("strings serialize");
            self.attributes.insert(name.clone(), json);
            self.arrays.insert(name);
        }
        self
    }

    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        // SNS rejects an empty String value, and names outside its rules (valid_attribute_name).
        if !value.is_empty() && valid_attribute_name(&name) {
            self.attributes.insert(name, value);
        }
        self
    }
}

/// SNS message attribute names: up to 256 of A-Z a-z 0-9 _ - ., no leading or trailing `.`, no
/// `..`, not starting with `AWS.` or `Amazon.` (SNS "Amazon SNS message attributes").
pub fn valid_attribute_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

/// One line, no control characters, at most 99 characters, cut on a character boundary with
/// an ellipsis so a reader can tell it was cut.
pub fn subject_line(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if clean.chars().count() <= MAX_SUBJECT_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_SUBJECT_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Cuts to `max` UTF-8 bytes on a character boundary and says what was dropped.
fn truncate_bytes(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let end = crate::text::prefix(&s, max - 120).len();
    let dropped_lines = s[end..].lines().count();
    s.truncate(end);
    s.push_str(&format!(
        "\n… (truncated: the last {} bytes, {dropped_lines} line(s), did not fit SNS's 256 KiB; the function's log has them)",
        total - end
    ));
    s
}

/// Where notifications go. Handlers are generic over it so unit tests use a plain fake.
pub trait Notifier: Send + Sync {
    /// Sends it; returns the message id.
    fn notify(&self, n: &Notification) -> impl Future<Output = Result<String, AwsError>> + Send;
}

/// Publishes to an SNS topic.
#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
    function: String,
    environment: String,
}

impl SnsNotifier {
    pub fn new(
        client: aws_sdk_sns::Client,
        topic_arn: impl Into<String>,
        function: impl Into<String>,
        environment: impl Into<String>,
    ) -> Self {
        SnsNotifier {
            client,
            topic_arn: topic_arn.into(),
            function: function.into(),
            environment: environment.into(),
        }
    }

    /// All attributes of a message: the standard three first, then the notification's own, up to
    /// SNS's limit of ten.
    pub fn attributes(&self, n: &Notification) -> BTreeMap<String, String> {
        let mut all = BTreeMap::from([
            ("severity".to_owned(), n.severity.as_str().to_owned()),
            ("function".to_owned(), self.function.clone()),
            ("environment".to_owned(), self.environment.clone()),
        ]);
        for (k, v) in &n.attributes {
            if all.len() == MAX_ATTRIBUTES {
                break;
            }
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        all
    }
}

impl Notifier for SnsNotifier {
    async fn notify(&self, n: &Notification) -> Result<String, AwsError> {
        let mut req = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&n.subject)
            .message(&n.body);
        for (name, value) in self.attributes(n) {
            let data_type = if n.arrays.contains(&name) {
                "String.Array"
            } else {
                "String"
            };
            let attr = MessageAttributeValue::builder()
                .data_type(data_type)
                .string_value(value)
                .build()
                .expect("data_type is set");
            req = req.message_attributes(name, attr);
        }
        let out = req.send().await.context("sns:Publish")?;
        let id = out.message_id.unwrap_or_default();
        info!(topic = %self.topic_arn, message_id = %id, severity = %n.severity, subject = %n.subject, "notification published");
        Ok(id)
    }
}

/// U+2060 WORD JOINER: invisible, and it breaks the character sequences chat markup is made of.
const JOINER: char = '\u{2060}';

/// Text from the world (hostnames, annotations, API error messages) made inert for a chat:
/// no mention (`@here`, `<!channel>`, `<@U123>`), no link (`[x](url)`, `<url|x>`, a bare
/// `https://`), whatever it contains. What a reader sees is unchanged but for invisible joiners.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut prev = '\0';
    for c in text.chars() {
        // `](` is a Markdown link, `:/` the start of an autolinked URL.
        if (prev == ']' && c == '(') || (prev == ':' && c == '/') {
            out.push(JOINER);
        }
        out.push(c);
        // `@name` and Slack's `<!here>`, `<@U..>`, `<#C..>`, `<https://..|..>` all start here.
        if c == '@' || c == '<' {
            out.push(JOINER);
        }
        prev = c;
    }
    out
}

/// A title, one line: inert, and no emphasis or code markup of its own (the characters that
/// make it are swapped for look-alikes).
fn inert_title(text: &str) -> String {
    inert(text)
        .chars()
        .map(|c| match c {
            '`' => '\u{02CB}',
            '*' => '\u{2217}',
            '~' => '\u{223C}',
            '_' => '\u{FF3F}',
            '|' => '\u{2223}',
            c => c,
        })
        .collect()
}

/// A code fence longer than any backtick run in `body` (CommonMark: a fence closes only on a
/// run at least as long as the one that opened it), so nothing in the body can close it.
fn fence(body: &str) -> String {
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// The custom-notification JSON that Amazon Q Developer in chat applications (formerly AWS
/// Chatbot) renders in Slack, Teams or Chime ("Custom notifications" in its user guide). Sent only
/// to a chat topic: a mail subscriber of that topic would receive this JSON as text. Everything
/// in it may carry someone else's text, so the body stays in its code block and nothing becomes
/// a link or a mention.
pub fn chat_message(n: &Notification) -> String {
    // The body may be near SNS's 256 KiB; JSON escaping would push it over, and a chat reader
    // wants the top of it anyway. The alerts topic keeps the whole text.
    let body = crate::text::prefix(&n.body, MAX_CHAT_BODY_BYTES);
    let cut = if body.len() < n.body.len() {
        "\n… (cut here; the alerts topic's message has all of it)"
    } else {
        ""
    };
    let body = inert(&format!("{body}{cut}"));
    let fence = fence(&body);
    let context: BTreeMap<&String, String> = n
        .attributes
        .iter()
        .map(|(k, v)| (k, inert_title(v)))
        .collect();
    let mut content = serde_json::json!({
        "textType": "client-markdown",
        "title": inert_title(&n.subject),
        "description": format!("{fence}\n{body}\n{fence}"),
    });
    let mut metadata = serde_json::json!({
        "enableCustomActions": false,
        "additionalContext": context,
    });
    let c = &n.chat;
    let list =
        |items: &[String]| -> serde_json::Value { items.iter().map(|i| inert_title(i)).collect() };
    if !c.next_steps.is_empty() {
        // A step is shown as Markdown: each is one inline code span (a fence longer than any
        // backtick run in it), so a name in a command stays text.
        let steps: Vec<String> = c
            .next_steps
            .iter()
            .map(|s| {
                let s = inert(s);
                let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
                let f = "`".repeat(longest + 1);
                format!("{f} {s} {f}")
            })
            .collect();
        content["nextSteps"] = steps.into();
    }
    if !c.keywords.is_empty() {
        content["keywords"] = list(&c.keywords);
    }
    if let Some(t) = &c.thread {
        metadata["threadId"] = t.clone().into();
    }
    if let Some(t) = &c.event_type {
        metadata["eventType"] = inert_title(t).into();
    }
    if !c.related.is_empty() {
        metadata["relatedResources"] = list(&c.related);
    }
    metadata["summary"] = inert_title(&n.subject).into();
    serde_json::json!({
        "version": "1.0",
        "source": "custom",
        "content": content,
        "metadata": metadata,
    })
    .to_string()
}

/// What one subscriber channel reads: text (mail, SMS, queues) or the chat JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Chat,
}

impl Format {
    /// The notification as this channel receives it.
    pub fn apply(self, n: &Notification) -> Notification {
        match self {
            Format::Text => n.clone(),
            Format::Chat => Notification {
                body: chat_message(n),
                ..n.clone()
            },
        }
    }
}

/// A function's topics: the alerts topic always gets text, so its mail subscribers can read it;
/// the optional chat topic (`CHAT_TOPIC_ARN`) gets the chat JSON of the same notification.
#[derive(Debug, Clone)]
pub struct Topics<N> {
    pub mail: N,
    pub chat: Option<N>,
}

/// Where a function's notifications go, as the stack sets it for every function:
/// `ALERTS_TOPIC_ARN` (mail), `CHAT_TOPIC_ARN` (optional, AWS Chatbot's JSON) and `ENVIRONMENT`
/// (every subject's prefix and attribute).
#[derive(Debug, Clone)]
pub struct Destinations {
    pub function: &'static str,
    pub environment: String,
    pub alerts: Arn,
    pub chat: Option<Arn>,
}

impl Destinations {
    pub fn from_env(env: &Env, function: &'static str) -> Result<Self, ConfigError> {
        Ok(Destinations {
            function,
            environment: environment(env),
            alerts: env.arn("ALERTS_TOPIC_ARN")?,
            chat: env.optional_arn("CHAT_TOPIC_ARN")?,
        })
    }

    /// One topic, publishing as this function.
    pub fn topic(&self, client: &aws_sdk_sns::Client, arn: &Arn) -> SnsNotifier {
        SnsNotifier::new(
            client.clone(),
            arn.as_str(),
            self.function,
            &self.environment,
        )
    }

    /// Mail, then chat, as one notifier.
    pub fn sns(&self, client: aws_sdk_sns::Client) -> Topics<SnsNotifier> {
        Topics {
            mail: self.topic(&client, &self.alerts),
            chat: self.chat.as_ref().map(|arn| self.topic(&client, arn)),
        }
    }
}

impl<N: Notifier> Notifier for Topics<N> {
    /// Mail first; the chat copy only once mail has it. A chat failure fails the call, so the
    /// caller's retry delivers it (at the cost of a second mail), rather than losing it quietly.
    async fn notify(&self, n: &Notification) -> Result<String, AwsError> {
        let id = self.mail.notify(n).await?;
        if let Some(chat) = &self.chat {
            chat.notify(&Format::Chat.apply(n)).await?;
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_subject_is_kept() {
        assert_eq!(
            subject_line("[prod] 2 exports started"),
            "[prod] 2 exports started"
        );
    }

    #[test]
    fn subject_is_fewer_than_100_characters_at_every_length_around_the_limit() {
        for len in [98, 99, 100, 101] {
            for unit in ["a", "é", "€", "🚀"] {
                let s = subject_line(&unit.repeat(len));
                let n = s.chars().count();
                assert!(n <= 99, "{len} x {unit}: {n}");
                if len <= 99 {
                    assert_eq!(s, unit.repeat(len), "kept whole");
                } else {
                    assert!(s.ends_with('…'), "cut is visible");
                }
            }
        }
    }

    #[test]
    fn attribute_names_sns_would_refuse_are_dropped() {
        let n = Notification::new("s", "b", Severity::Info)
            .attribute("cluster", "prod")
            .attribute("AWS.reserved", "x")
            .attribute("has space", "x")
            .attribute("a..b", "x")
            .attribute(".lead", "x");
        assert_eq!(n.attributes.keys().collect::<Vec<_>>(), ["cluster"]);
    }

    #[test]
    fn subject_is_cut_to_99_characters_on_a_character_boundary() {
        // 3-byte and 4-byte characters: a byte-based cut would panic or split one.
        let long = "é€🚀".repeat(60);
        let s = subject_line(&long);
        assert_eq!(s.chars().count(), MAX_SUBJECT_CHARS);
        assert!(s.ends_with('…'));
        assert!(long.starts_with(s.trim_end_matches('…')));
    }

    #[test]
    fn subject_is_one_line_without_control_characters() {
        assert_eq!(
            subject_line("ALARM:\tapi-cpu\nhigh\r\n"),
            "ALARM: api-cpu high"
        );
    }

    #[test]
    fn long_body_is_cut_below_the_sns_limit_in_bytes_and_says_what_was_dropped() {
        // 2-byte characters: 256 Ki characters are 512 KiB, twice SNS's limit.
        let n = Notification::new("s", "ü\n".repeat(256 * 1024 / 2), Severity::Info);
        assert!(n.body.len() <= MAX_BODY_BYTES, "{}", n.body.len());
        assert!(
            n.body.contains("(truncated: the last "),
            "{}",
            &n.body[n.body.len() - 200..]
        );
        assert!(n.body.contains("line(s)"));
        let small = Notification::new("s", "ü".repeat(1000), Severity::Info);
        assert_eq!(small.body, "ü".repeat(1000));
    }

    #[test]
    fn attributes_carry_severity_function_environment_and_stay_under_ten() {
        let client = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::Config::builder()
                .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
                .build(),
        );
        let notifier = SnsNotifier::new(
            client,
            "arn:aws:sns:us-east-1:123456789012:t",
            "dns-sync",
            "prod",
        );
        let mut n = Notification::new("s", "b", Severity::Error)
            .attribute("cluster", "prod")
            .attribute("empty", "");
        for i in 0..12 {
            n = n.attribute(format!("extra{i:02}"), "x");
        }
        let attrs = notifier.attributes(&n);
        assert_eq!(attrs.len(), MAX_ATTRIBUTES);
        assert_eq!(attrs["severity"], "error");
        assert_eq!(attrs["function"], "dns-sync");
        assert_eq!(attrs["environment"], "prod");
        assert_eq!(attrs["cluster"], "prod");
        assert!(!attrs.contains_key("empty"));
    }

    #[tokio::test]
    async fn mail_gets_text_and_chat_gets_the_json_it_renders() {
        use testing::Recorder;
        let topics = Topics {
            mail: Recorder::default(),
            chat: Some(Recorder::default()),
        };
        let n = Notification::new("[prod] ALARM: x", "x is ALARM", Severity::Error)
            .attribute("cluster", "prod");
        topics.notify(&n).await.unwrap();
        assert_eq!(topics.mail.sent(), std::slice::from_ref(&n));
        let chat = topics.chat.as_ref().unwrap().sent();
        let json: serde_json::Value = serde_json::from_str(&chat[0].body).unwrap();
        assert_eq!(
            (json["version"].as_str(), json["source"].as_str()),
            (Some("1.0"), Some("custom"))
        );
        assert_eq!(json["content"]["title"], "[prod] ALARM: x");
        assert_eq!(json["content"]["description"], "```\nx is ALARM\n```");
        assert_eq!(json["metadata"]["additionalContext"]["cluster"], "prod");
    }

    /// The custom-notification schema's fields ("Custom notifications", Amazon Q Developer in
    /// chat applications): content.nextSteps and keywords, metadata.threadId, eventType, summary
    /// and relatedResources, each a string or a list of strings, none able to add markup.
    #[test]
    fn the_chat_copy_threads_and_carries_next_steps_keywords_and_resources() {
        let n = Notification::new("[prod] ALARM: api-cpu-high", "x", Severity::Error)
            .thread("alarm/123456789012/eu-west-1/api-cpu-high <@here>")
            .event_type("ALARM")
            .keyword("prod")
            .keyword("alarm")
            .next_step("aws cloudwatch describe-alarm-history --alarm-name `api`-cpu <!channel>")
            .related("i-0123456789abcdef0");
        let json: serde_json::Value = serde_json::from_str(&chat_message(&n)).unwrap();
        let string = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        assert_eq!(
            string(&json["metadata"]["threadId"]).as_deref(),
            Some("alarm/123456789012/eu-west-1/api-cpu-highhere"),
            "no markup character reaches the thread id"
        );
        assert_eq!(
            string(&json["metadata"]["eventType"]).as_deref(),
            Some("ALARM")
        );
        assert_eq!(
            json["content"]["keywords"],
            serde_json::json!(["prod", "alarm"])
        );
        assert_eq!(
            json["metadata"]["relatedResources"],
            serde_json::json!(["i-0123456789abcdef0"])
        );
        let step = json["content"]["nextSteps"][0].as_str().unwrap();
        assert!(step.starts_with("`` ") && step.ends_with(" ``"), "{step}");
        assert!(!step.contains("<!channel>"), "{step}");
        assert!(string(&json["metadata"]["summary"]).is_some());
        let crowded = (0..8).fold(Notification::new("s", "b", Severity::Info), |n, i| {
            n.keyword(format!("k{i}"))
        });
        assert_eq!(crowded.chat.keywords.len(), MAX_CHAT_LIST);
    }

    /// Every key of the chat copy is one the custom-notification event schema defines, with its
    /// type ("Custom notifications", Amazon Q Developer in chat applications: `version`,
    /// `source`, `id`, `content` {`textType`, `title`, `description`, `nextSteps`, `keywords`},
    /// `metadata` {`threadId`, `summary`, `eventType`, `relatedResources`, `additionalContext`,
    /// `enableCustomActions`}); Amazon Q drops a message it cannot read.
    #[test]
    fn the_chat_copy_holds_only_the_schemas_fields_with_their_types() {
        use serde_json::Value;
        let full = Notification::new("[prod] s", "b", Severity::Warning)
            .attribute("cluster", "prod")
            .thread("alarm/x")
            .event_type("ALARM")
            .keyword("prod")
            .next_step("kubectl get hpa -A")
            .related("i-0123456789abcdef0");
        for n in [full, Notification::new("s", "b", Severity::Info)] {
            let json: Value = serde_json::from_str(&chat_message(&n)).unwrap();
            let keys =
                |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
            let allowed = |have: Vec<String>, schema: &[&str]| {
                for k in have {
                    assert!(schema.contains(&k.as_str()), "{k} is not in the schema");
                }
            };
            allowed(
                keys(&json),
                &["version", "source", "id", "content", "metadata"],
            );
            allowed(
                keys(&json["content"]),
                &["textType", "title", "description", "nextSteps", "keywords"],
            );
            allowed(
                keys(&json["metadata"]),
                &[
                    "threadId",
                    "summary",
                    "eventType",
                    "relatedResources",
                    "additionalContext",
                    "enableCustomActions",
                ],
            );
            for s in [
                &json["version"],
                &json["source"],
                &json["content"]["textType"],
            ] {
                assert!(s.is_string());
            }
            for k in ["title", "description"] {
                assert!(json["content"][k].is_string(), "{k}");
            }
            for k in ["threadId", "summary", "eventType"] {
                let v = &json["metadata"][k];
                assert!(v.is_null() || v.is_string(), "{k}");
            }
            for list in [
                &json["content"]["nextSteps"],
                &json["content"]["keywords"],
                &json["metadata"]["relatedResources"],
            ] {
                assert!(
                    list.is_null() || list.as_array().unwrap().iter().all(Value::is_string),
                    "{list}"
                );
            }
            let context = json["metadata"]["additionalContext"].as_object().unwrap();
            assert!(context.values().all(Value::is_string));
            assert!(json["metadata"]["enableCustomActions"].is_boolean());
        }
    }

    #[test]
    fn a_long_body_is_cut_in_the_chat_copy_and_says_so() {
        let n = Notification::new("s", "\"ü\"\n".repeat(60 * 1024), Severity::Info);
        let chat = chat_message(&n);
        assert!(chat.len() < MAX_CHAT_BODY_BYTES * 2, "{}", chat.len());
        assert!(chat.contains("(cut here; the alerts topic's message has all of it)"));
    }

    #[tokio::test]
    async fn a_failed_mail_sends_no_chat_and_a_failed_chat_fails_the_call() {
        use testing::Recorder;
        let n = Notification::new("s", "b", Severity::Info);
        let mail_down = Topics {
            mail: Recorder::failing("Throttling", 400),
            chat: Some(Recorder::default()),
        };
        assert!(mail_down.notify(&n).await.is_err());
        assert!(mail_down.chat.as_ref().unwrap().sent().is_empty());
        let chat_down = Topics {
            mail: Recorder::default(),
            chat: Some(Recorder::failing("AuthorizationError", 403)),
        };
        assert!(chat_down.notify(&n).await.is_err());
        assert_eq!(chat_down.mail.sent().len(), 1);
    }
}

/// A notifier that records what it is asked to send, for the functions' unit tests.
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use std::sync::Mutex;

    use super::*;

    /// Why the chat copy of `n` is not inert, if it is not: the body leaves its code block, or
    /// some text makes a link or a mention.
    pub fn chat_not_inert(n: &Notification) -> Option<String> {
        let chat: serde_json::Value = serde_json::from_str(&chat_message(n)).ok()?;
        let description = chat["content"]["description"].as_str().unwrap_or_default();
        let title = chat["content"]["title"].as_str().unwrap_or_default();
        let fence = description.lines().next().unwrap_or_default();
        if fence.len() < 3 || !fence.chars().all(|c| c == '`') || !description.ends_with(fence) {
            return Some(format!("not one code block: {description}"));
        }
        let inner = &description[fence.len()..description.len() - fence.len()];
        if inner.contains(fence) {
            return Some(format!("the body closes its fence: {description}"));
        }
        for text in [inner, title] {
            for markup in ["](", "@here", "<!", "<http", "https://"] {
                if text.contains(markup) {
                    return Some(format!("{markup} in {text:?}"));
                }
            }
        }
        title
            .contains('`')
            .then(|| format!("code markup in the title {title:?}"))
    }

    #[derive(Debug, Default)]
    pub struct Recorder {
        sent: Mutex<Vec<Notification>>,
        /// When set, every send fails with this (code, HTTP status).
        pub fail_with: Option<(&'static str, u16)>,
    }

    impl Recorder {
        pub fn failing(code: &'static str, status: u16) -> Self {
            Recorder {
                fail_with: Some((code, status)),
                ..Recorder::default()
            }
        }

        pub fn sent(&self) -> Vec<Notification> {
            self.sent.lock().expect("recorder lock").clone()
        }
    }

    impl Notifier for Recorder {
        async fn notify(&self, n: &Notification) -> Result<String, AwsError> {
            if let Some((code, status)) = self.fail_with {
                return Err(AwsError::fake("sns:Publish", code, status, ""));
            }
            let mut sent = self.sent.lock().expect("recorder lock");
            sent.push(n.clone());
            Ok(format!("msg-{}", sent.len()))
        }
    }

    /// The review's fence breakout: any text with ``` closed the chat copy's code block and
    /// posted the rest as markdown, links and mentions included, into the ops channel.
    #[test]
    fn untrusted_text_never_leaves_its_code_block_nor_links_nor_mentions() {
        let hostile = "ok\n```\n[verify your account](https://evil.example/login) @here <!channel> \
                       <https://evil.example|click> ````` https://evil.example";
        let n = Notification::new(format!("[prod] {hostile}"), hostile, Severity::Error)
            .attribute("cluster", "prod`*x*`[y](https://evil.example)");
        let chat: serde_json::Value = serde_json::from_str(&chat_message(&n)).unwrap();
        let description = chat["content"]["description"].as_str().unwrap();
        let title = chat["content"]["title"].as_str().unwrap();
        let context = chat["metadata"]["additionalContext"]["cluster"]
            .as_str()
            .unwrap();
        let fence = description.lines().next().unwrap();
        assert!(
            fence.len() > 5 && fence.chars().all(|c| c == '`'),
            "{fence}"
        );
        assert!(description.ends_with(&format!("\n{fence}")));
        let inner = &description[fence.len()..description.len() - fence.len()];
        assert!(
            !inner.contains(fence),
            "the body closes the fence: {description}"
        );
        for text in [inner, title, context] {
            for markup in ["](", "@here", "<!channel", "<https", "https://"] {
                assert!(!text.contains(markup), "{markup} in {text:?}");
            }
        }
        for markup in ['`', '*'] {
            assert!(
                !title.contains(markup) && !context.contains(markup),
                "{title} {context}"
            );
        }
        // A reader still reads the same words.
        assert_eq!(inner.replace('\u{2060}', "").trim(), hostile);
    }
}
