//! Where alerts go: the topics, which of them each alert goes to, and a delivery that a
//! redelivery completes without repeating what already went out.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::SqsMessage;
use bridgekeeper::Error;
use bridgekeeper::idempotency::Remember;
use bridgekeeper::notify::{Format, Notification, Notifier, Severity};
use tracing::{info, warn};

use crate::batch::{Response, record_event_id, redelivered};
use crate::domain::Alert;

/// Where alerts go: every alert to `all` as text and to `chat` as the chat JSON; error-severity
/// alerts also to `errors`.
pub struct Notifiers<N> {
    pub all: N,
    pub errors: Option<N>,
    pub chat: Option<N>,
}

impl<N> Notifiers<N> {
    /// (name, format, topic) for one notification; the name keys what a topic already got.
    pub fn targets(&self, severity: Severity) -> Vec<(&'static str, Format, &N)> {
        let mut t = vec![("alerts", Format::Text, &self.all)];
        if severity == Severity::Error {
            t.extend(self.errors.as_ref().map(|n| ("errors", Format::Text, n)));
        }
        t.extend(self.chat.as_ref().map(|n| ("chat", Format::Chat, n)));
        t
    }
}

/// Sends one alert to each of its topics. On a redelivery, a topic that already got it (a
/// remembered partial delivery) is skipped; when some topic fails, the ones that succeeded are
/// remembered and the alert's records go back to SQS for the others.
pub async fn deliver<N: Notifier, S: Remember>(
    alert: &Alert,
    n: &Notification,
    records: &HashMap<String, &SqsMessage>,
    notifiers: &Notifiers<N>,
    store: &S,
    response: &mut Response,
) -> bool {
    // Event ids are read (the bodies parsed again) only on a redelivery or a failure.
    let events = || -> Vec<Option<String>> {
        alert
            .records
            .iter()
            .map(|r| records.get(r).and_then(|m| record_event_id(m)))
            .collect()
    };
    let earlier: Option<Vec<String>> = alert
        .records
        .iter()
        .any(|r| records.get(r).is_some_and(|m| redelivered(m)))
        .then(events)
        .and_then(|ids| ids.into_iter().collect());
    let mut sent = Vec::new();
    let mut failed = None;
    for (target, format, notifier) in notifiers.targets(n.severity) {
        if let Some(ids) = &earlier
            && already_sent(store, ids, target).await
        {
            info!(target, "already delivered to this topic; skipped");
            continue;
        }
        match notifier.notify(&format.apply(n)).await {
            Ok(_) => sent.push(target),
            Err(e) => {
                warn!(target, error = %e, records = alert.records.len(), "notification failed; records returned to the queue");
                failed = Some(e);
            }
        }
    }
    let Some(e) = failed else {
        response.notifications += 1;
        return true;
    };
    let ids: Vec<String> = events().into_iter().flatten().collect();
    for target in sent {
        for event in &ids {
            if let Err(err) = store.remember(&sent_key(event, target), "1").await {
                warn!(target, error = %err, "partial delivery not remembered; the retry may repeat it");
            }
        }
    }
    response.retry(alert.records.iter().cloned(), &Error::from(e));
    false
}

fn sent_key(event_id: &str, target: &str) -> String {
    format!("sent#{event_id}#{target}")
}

async fn already_sent<S: Remember>(store: &S, events: &[String], target: &str) -> bool {
    for event in events {
        match store.recall(&sent_key(event, target)).await {
            Ok(Some(_)) => {}
            // Unknown or unreadable: send again rather than risk losing it.
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {

    use bridgekeeper::notify::testing::Recorder;

    use crate::delivery::Notifiers;
    use crate::fakes::*;

    use crate::pipeline::handle_batch;

    #[tokio::test]
    async fn an_alert_that_could_not_be_sent_is_sent_on_redelivery() {
        let mut p = with(Notifiers {
            all: Recorder::failing("Throttling", 400),
            errors: None,
            chat: None,
        });
        let payload = batch(&[sample!("alarm-ok.json")]);
        let r = delivered(&payload, &p).await;
        assert_eq!(r.batch_item_failures.len(), 1);
        p.notifiers.all = Recorder::default();
        let r = delivered(&again(payload), &p).await;
        assert_eq!((r.duplicates, r.notifications), (0, 1));
        assert_eq!(p.notifiers.all.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_partial_two_topic_failure_is_retried_for_the_failed_topic_only() {
        let mut p = with(Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::failing("Throttling", 400)),
            chat: None,
        });
        let payload = batch(&[sample!("alarm-state-change.json")]);
        let r = delivered(&payload, &p).await;
        assert_eq!(r.batch_item_failures.len(), 1, "{r:?}");
        assert_eq!(p.notifiers.all.sent().len(), 1);
        p.notifiers.errors = Some(Recorder::default());
        let r = delivered(&again(payload), &p).await;
        assert!(r.batch_item_failures.is_empty(), "{r:?}");
        assert_eq!(
            p.notifiers.all.sent().len(),
            1,
            "the alerts topic had it already"
        );
        assert_eq!(p.notifiers.errors.as_ref().unwrap().sent().len(), 1);
    }

    #[tokio::test]
    async fn mail_and_chat_topics_each_get_their_own_format() {
        let p = with(Notifiers {
            all: Recorder::default(),
            errors: None,
            chat: Some(Recorder::default()),
        });
        handle_batch(
            batch(&[sample!("alarm-state-change.json")]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        let mail = &p.notifiers.all.sent()[0];
        assert!(
            mail.body.starts_with("api-cpu-high is ALARM (was OK)."),
            "{}",
            mail.body
        );
        let chat = &p.notifiers.chat.as_ref().unwrap().sent()[0];
        let body: serde_json::Value = serde_json::from_str(&chat.body).unwrap();
        assert_eq!(body["source"], "custom");
        assert_eq!(
            body["content"]["title"],
            "[prod] ALARM: api-cpu-high (CPUUtilization > 80)"
        );
        assert!(
            body["content"]["description"]
                .as_str()
                .unwrap()
                .contains("latest 93.5")
        );
    }

    #[tokio::test]
    async fn a_failed_publish_returns_exactly_its_records_for_retry() {
        let p = with(Notifiers {
            all: Recorder::failing("Throttling", 400),
            errors: None,
            chat: None,
        });
        let bodies = [
            sample!("launch-successful.json"),
            sample!("launch-successful.json"),
        ];
        let r = handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.batch_item_failures.len(), 2);
        assert!(r.failures.iter().all(|f| f.retryable));
        assert_eq!(r.notifications, 0);
    }

    #[tokio::test]
    async fn errors_also_go_to_the_errors_topic_and_others_do_not() {
        let p = with(Notifiers {
            all: Recorder::default(),
            errors: Some(Recorder::default()),
            chat: None,
        });
        let bodies = [
            sample!("launch-successful.json"),
            sample!("alarm-state-change.json"),
            sample!("rebalance-recommendation.json"),
        ];
        handle_batch(batch(&bodies), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(p.notifiers.all.sent().len(), 3);
        assert_eq!(
            subjects(p.notifiers.errors.as_ref().unwrap()),
            ["[prod] ALARM: api-cpu-high (CPUUtilization > 80)"]
        );
    }
}
