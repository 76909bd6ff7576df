//! The batch's part in following node-group eks: a call that started an update sends its
//! first follow-up (once per update, though the call's event may come twice); a follow-up asks
//! EKS, then sends the next one or becomes the message that tells how the update ended.

use std::collections::HashMap;

use bridgekeeper::accounts::Scope;
use bridgekeeper::idempotency::Remember;
use chrono::Utc;
use futures::StreamExt;
use tracing::{info, warn};

use crate::aws::Eks;
use crate::batch::Response;
use crate::domain::Fact;
use crate::followup::{FollowUp, Next};

/// Follow-ups answered at once.
const AT_ONCE: usize = 8;

/// What one fact becomes.
enum Done {
    Keep(String, Box<Fact>),
    /// Answered by a later follow-up; not told now.
    Followed,
    /// EKS or SQS could not be asked: the record comes back.
    Retry(String, bridgekeeper::Error),
}

/// The store key that says an update's follow-ups have begun.
fn begun(scope: &Scope, update: &str) -> String {
    format!(
        "follow#{}/{}#{update}",
        scope.account.as_deref().unwrap_or("here"),
        scope.region.as_deref().unwrap_or("here")
    )
}

pub async fn follow<U: Eks, S: Remember>(
    facts: Vec<(String, Fact)>,
    origins: &HashMap<String, Scope>,
    eks: &U,
    store: &S,
    response: &mut Response,
) -> Vec<(String, Fact)> {
    let follows = |f: &Fact| match f {
        Fact::FollowUp(_) => true,
        Fact::Nodegroup(n) => eks.following() && FollowUp::of(n).is_some(),
        _ => false,
    };
    if !facts.iter().any(|(_, f)| follows(f)) {
        return facts;
    }
    let done: Vec<Done> = futures::stream::iter(facts)
        .map(|(record, fact)| async move {
            let scope = &origins[&record];
            match fact {
                Fact::FollowUp(f) => answer(record, f, scope, eks).await,
                Fact::Nodegroup(n) => {
                    let started = match FollowUp::of(&n).filter(|_| eks.following()) {
                        Some(f) => start(&f, scope, eks, store).await,
                        None => Ok(()),
                    };
                    match started {
                        Ok(()) => Done::Keep(record, Box::new(Fact::Nodegroup(n))),
                        Err(e) => Done::Retry(record, e),
                    }
                }
                other => Done::Keep(record, Box::new(other)),
            }
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut kept = Vec::with_capacity(done.len());
    for d in done {
        match d {
            Done::Keep(record, fact) => kept.push((record, *fact)),
            Done::Followed => response.followed += 1,
            Done::Retry(record, e) => response.retry([record], &e),
        }
    }
    kept
}

/// The first follow-up of an update, unless an earlier delivery of its call sent it.
async fn start<U: Eks, S: Remember>(
    f: &FollowUp,
    scope: &Scope,
    eks: &U,
    store: &S,
) -> Result<(), bridgekeeper::Error> {
    let key = begun(scope, &f.update_id);
    if matches!(store.recall(&key).await, Ok(Some(_))) {
        info!(update = %f.update_id, "update already followed");
        return Ok(());
    }
    eks.later(scope, f).await?;
    if let Err(e) = store.remember(&key, &Utc::now().to_rfc3339()).await {
        // A second delivery of the call would start a second chain, whose end repeats this
        // one's: told twice, not lost.
        warn!(update = %f.update_id, error = %e, "followed update not remembered");
    }
    info!(cluster = %f.cluster, nodegroup = %f.nodegroup, update = %f.update_id, "following the update");
    Ok(())
}

async fn answer<U: Eks>(record: String, f: FollowUp, scope: &Scope, eks: &U) -> Done {
    let state = match eks.describe_update(scope, &f).await {
        Ok(state) => state,
        Err(e) => return Done::Retry(record, e),
    };
    match f.next(state, Utc::now()) {
        Next::Again(next) => match eks.later(scope, &next).await {
            Ok(()) => Done::Followed,
            Err(e) => Done::Retry(record, e),
        },
        Next::Tell(ended) => Done::Keep(record, Box::new(Fact::UpdateEnded(ended))),
    }
}

#[cfg(test)]
mod tests {
    use bridgekeeper::accounts::Scope;
    use bridgekeeper::notify::Severity;

    use crate::fakes::*;
    use crate::followup::{FollowUp, MAX_ROUNDS, Status, UpdateState};
    use crate::pipeline::handle_batch;

    const UPDATE: &str = "1a2b3c4d-aaaa-bbbb-cccc-ddddeeeeffff";

    fn following() -> TestPorts {
        let mut p = ports();
        p.eks.following = true;
        p
    }

    fn here() -> Scope {
        Scope::account("123456789012").in_region("eu-west-1")
    }

    /// The version update's call handled; the follow-up it sent, as the queue delivers it.
    async fn started(p: &TestPorts) -> String {
        handle_batch(
            batch(&[sample!("nodegroup-version-update.json")]),
            &config(&[]),
            p,
        )
        .await
        .unwrap();
        let (scope, f) = p.eks.later.lock().unwrap()[0].clone();
        f.body(&scope, "2026-11-22T05:25:00Z".parse().unwrap())
    }

    #[tokio::test]
    async fn a_version_update_is_followed_once_though_its_call_comes_twice() {
        let p = following();
        let call = sample!("nodegroup-version-update.json");
        for _ in 0..2 {
            let r = handle_batch(batch(&[call]), &config(&[]), &p)
                .await
                .unwrap();
            assert!(r.batch_item_failures.is_empty(), "{r:?}");
        }
        let later = p.eks.later.lock().unwrap().clone();
        assert_eq!(later.len(), 1, "{later:?}");
        let (scope, f) = &later[0];
        assert_eq!(scope, &here());
        assert_eq!(
            (
                f.cluster.as_str(),
                f.nodegroup.as_str(),
                f.update_id.as_str(),
                f.round
            ),
            ("prod-eks", "ng-1", UPDATE, 0)
        );
        assert_eq!(f.what, "update to release 1.33.5-20261110");
        // The start is told at once, in the thread its end will join.
        let start = &p.notifiers.all.sent()[0];
        assert_eq!(
            start.subject,
            "[prod] Node group prod-eks/ng-1 update to release 1.33.5-20261110 started"
        );
        assert_eq!(start.chat.thread.as_deref(), Some(f.thread().as_str()));
    }

    #[tokio::test]
    async fn a_running_update_is_asked_again_and_an_ended_one_is_told_in_its_thread() {
        let mut p = following();
        let body = started(&p).await;
        p.eks.states.insert(
            UPDATE.into(),
            UpdateState {
                status: Status::InProgress,
                errors: vec![],
            },
        );
        let r = handle_batch(batch(&[&body]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!((r.notifications, r.followed), (0, 1), "{r:?}");
        assert_eq!(p.eks.later.lock().unwrap()[1].1.round, 1);
        p.eks.states.insert(
            UPDATE.into(),
            UpdateState {
                status: Status::Failed,
                errors: vec![(
                    "NodeCreationFailure".into(),
                    "Instances failed to join the kubernetes cluster".into(),
                    vec!["i-0a1b2c3d4e5f60718".into()],
                )],
            },
        );
        let r = handle_batch(batch(&[&body]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!((r.notifications, r.followed), (1, 0), "{r:?}");
        let end = p.notifiers.all.sent().pop().unwrap();
        assert_eq!(
            end.subject,
            "[prod] FAILED: node group prod-eks/ng-1 update to release 1.33.5-20261110: NodeCreationFailure"
        );
        assert_eq!(end.severity, Severity::Error);
        assert_eq!(
            end.chat.thread.as_deref(),
            Some(format!("nodegroup-update/{UPDATE}").as_str())
        );
        assert_eq!(*p.eks.described.lock().unwrap(), [UPDATE, UPDATE]);
        assert_eq!(
            p.eks.later.lock().unwrap().len(),
            2,
            "no follow-up after the end"
        );
    }

    #[tokio::test]
    async fn an_update_eks_no_longer_knows_is_told_once_as_gone() {
        let p = following();
        let body = started(&p).await;
        let r = handle_batch(batch(&[&body]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.notifications, 1, "{r:?}");
        let n = p.notifiers.all.sent().pop().unwrap();
        assert!(n.subject.ends_with("update gone"), "{}", n.subject);
        assert_eq!(n.severity, Severity::Warning);
    }

    #[tokio::test]
    async fn when_eks_cannot_be_asked_the_follow_up_returns_to_the_queue() {
        let mut p = following();
        let body = started(&p).await;
        p.eks.down = true;
        let r = handle_batch(batch(&[&body]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.batch_item_failures.len(), 1, "{r:?}");
        assert!(r.failures[0].retryable, "{r:?}");
        assert_eq!(r.notifications, 0);
    }

    #[tokio::test]
    async fn a_follow_up_naming_what_eks_would_refuse_is_rejected_and_asks_nothing() {
        let p = following();
        let f = FollowUp {
            cluster: "prod-eks/../other".into(),
            nodegroup: "ng-1".into(),
            update_id: UPDATE.into(),
            what: "update".into(),
            started: None,
            by: None,
            round: 0,
        };
        let body = f.body(&here(), "2026-11-22T05:25:00Z".parse().unwrap());
        let r = handle_batch(batch(&[&body]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.rejected.len(), 1, "{r:?}");
        assert!(!r.failures[0].retryable);
        assert!(p.eks.described.lock().unwrap().is_empty());
        let past = FollowUp {
            cluster: "prod-eks".into(),
            round: MAX_ROUNDS + 1,
            ..f
        };
        let body = past.body(&here(), "2026-11-22T05:25:00Z".parse().unwrap());
        let r = handle_batch(batch(&[&body]), &config(&[]), &p)
            .await
            .unwrap();
        assert_eq!(r.rejected.len(), 1, "{r:?}");
    }

    #[tokio::test]
    async fn without_a_follow_up_queue_an_update_is_told_as_it_starts_and_not_followed() {
        let p = ports();
        let r = handle_batch(
            batch(&[sample!("nodegroup-version-update.json")]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        assert_eq!(r.notifications, 1);
        assert!(p.eks.later.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_update_call_starts_nothing_to_follow() {
        let p = following();
        handle_batch(
            batch(&[sample!("nodegroup-config-failed.json")]),
            &config(&[]),
            &p,
        )
        .await
        .unwrap();
        assert!(p.eks.later.lock().unwrap().is_empty());
    }
}
