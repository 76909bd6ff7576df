//! A CloudFormation custom resource request in; entries ensured or removed on every listed
//! cluster (bounded concurrency); exactly one answer to CloudFormation out, whatever happened.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use bridgekeeper::Error;
use bridgekeeper::classify::chain;
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tracing::{error, info};

use crate::aws::{AccessEntries, Outcome};
use crate::domain::{self, Allowed, Grant, Plan, Properties, Request};
use crate::respond::{Respond, Response, Status, cap_reason};

/// Entries changed at once: EKS throttles per account, and a stack lists a handful of clusters.
pub const CONCURRENCY: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterResult {
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub request_type: &'static str,
    pub status: Status,
    pub physical_resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub clusters: Vec<ClusterResult>,
}

struct Envelope {
    kind: &'static str,
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    physical_resource_id: Option<String>,
}

/// `budget` is the time left before Lambda stops the invocation, minus a margin to answer in.
pub async fn handle<A: AccessEntries, R: Respond>(
    event: Value,
    budget: Duration,
    allowed: &Allowed,
    entries: &A,
    responder: &R,
) -> Result<Summary, Error> {
    bridgekeeper::runtime::readable(&event)?;
    let request: CloudFormationCustomResourceRequest =
        serde_json::from_value(event).map_err(|e| {
            Error::invalid_event(format!("not a CloudFormation custom resource request: {e}"))
        })?;
    let (envelope, request) = split(request, allowed)?;
    // Answered nowhere but CloudFormation's bucket: a request naming another URL is not
    // CloudFormation's, and nothing is done for it.
    crate::respond::check_url(&envelope.response_url).map_err(Error::invalid_event)?;
    let (plan, results, reason) = match request {
        Err(why) => (
            Plan {
                physical_id: envelope
                    .physical_resource_id
                    .clone()
                    .unwrap_or_else(|| format!("access-entries:invalid:{}", envelope.request_id)),
                ..Plan::default()
            },
            Vec::new(),
            Some(why),
        ),
        Ok(request) => {
            let plan = domain::plan(&request, envelope.physical_resource_id.as_deref());
            match tokio::time::timeout(budget, apply(&plan, entries)).await {
                Ok(results) => {
                    let failed: Vec<String> = results
                        .iter()
                        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.cluster)))
                        .collect();
                    let reason = (!failed.is_empty()).then(|| failed.join("; "));
                    (plan, results, reason)
                }
                Err(_) => {
                    let why = format!(
                        "timed out after {}s changing access entries on {} cluster(s)",
                        budget.as_secs(),
                        plan.ensure.len() + plan.remove.len()
                    );
                    (plan, Vec::new(), Some(why))
                }
            }
        }
    };
    let status = if reason.is_some() {
        Status::Failed
    } else {
        Status::Success
    };
    let response = Response {
        status,
        reason: reason.as_deref().map(cap_reason),
        physical_resource_id: plan.physical_id.clone(),
        stack_id: envelope.stack_id,
        request_id: envelope.request_id,
        logical_resource_id: envelope.logical_resource_id,
        data: BTreeMap::from([("Clusters".to_owned(), plan.ensure.join(","))]),
    };
    match &reason {
        Some(why) => error!(request = envelope.kind, reason = %why, "custom resource failed"),
        None => info!(
            request = envelope.kind,
            clusters = results.len(),
            "custom resource done"
        ),
    }
    // Not answered means CloudFormation waits an hour: let Lambda retry (every step is idempotent).
    responder
        .respond(&envelope.response_url, &response)
        .await
        .map_err(|e| Error::Transient(chain(&e)))?;
    Ok(Summary {
        request_type: envelope.kind,
        status,
        physical_resource_id: plan.physical_id,
        reason,
        clusters: results,
    })
}

/// The three request types carry the same envelope fields; only the physical id differs.
macro_rules! envelope {
    ($r:ident, $kind:literal, $physical:expr) => {
        Envelope {
            kind: $kind,
            response_url: $r.response_url,
            stack_id: $r.stack_id,
            request_id: $r.request_id,
            logical_resource_id: $r.logical_resource_id,
            physical_resource_id: $physical,
        }
    };
}

type Split = (Envelope, Result<Request, String>);

fn split(request: CloudFormationCustomResourceRequest, allowed: &Allowed) -> Result<Split, Error> {
    let props = |v: Value| -> Result<Grant, String> {
        serde_json::from_value::<Properties>(v)
            .map_err(|e| format!("properties: {e}"))?
            .validate(allowed)
    };
    Ok(match request {
        CloudFormationCustomResourceRequest::Create(r) => {
            let grant = props(r.resource_properties).map(Request::Create);
            (envelope!(r, "Create", None), grant)
        }
        CloudFormationCustomResourceRequest::Update(r) => {
            let update = props(r.resource_properties).map(|new| Request::Update {
                old: props(r.old_resource_properties).ok(),
                new,
            });
            (envelope!(r, "Update", Some(r.physical_resource_id)), update)
        }
        CloudFormationCustomResourceRequest::Delete(r) => {
            let grant = props(r.resource_properties).ok();
            (
                envelope!(r, "Delete", Some(r.physical_resource_id)),
                Ok(Request::Delete(grant)),
            )
        }
        // The enum is non_exhaustive; a RequestType serde did not know never gets this far.
        #[allow(unreachable_patterns)]
        _ => return Err(Error::invalid_event("unknown CloudFormation RequestType")),
    })
}

async fn apply<A: AccessEntries>(plan: &Plan, entries: &A) -> Vec<ClusterResult> {
    let ensure = plan.ensure.iter().map(|c| (c, true));
    let remove = plan.remove.iter().map(|c| (c, false));
    let mut results: Vec<ClusterResult> = futures::stream::iter(ensure.chain(remove))
        .map(|(cluster, add)| async move {
            let done = if add {
                entries
                    .ensure(cluster, &plan.principal_arn, &plan.groups)
                    .await
            } else {
                entries.remove(cluster, &plan.principal_arn).await
            };
            ClusterResult {
                cluster: cluster.clone(),
                outcome: done.as_ref().ok().copied(),
                error: done.err().map(|e| chain(&e)),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{Answers, FakeEks};
    use bridgekeeper::{Class, Classify};

    const ROLE: &str = "arn:aws:iam::111122223333:role/bk-DnsSyncFunctionRole-X";

    fn sample(name: &str) -> Value {
        let path = format!(
            "{}/../../events/access-entries/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    const BUDGET: Duration = Duration::from_secs(50);

    fn allowed() -> Allowed {
        Allowed {
            principals: vec![ROLE.into()],
        }
    }

    /// The review's request with a response URL of the invoker's choosing: plain http, any
    /// host. Nothing is done for it and nothing is sent anywhere.
    #[tokio::test]
    async fn a_response_url_not_on_s3_gets_nothing_done_and_no_answer() {
        for url in ["http://attacker.example/x", "https://attacker.example/x"] {
            let (eks, answers) = (FakeEks::default(), Answers::default());
            let mut event = sample("create.json");
            event["ResponseURL"] = serde_json::json!(url);
            let err = handle(event, BUDGET, &allowed(), &eks, &answers)
                .await
                .unwrap_err();
            assert_eq!(err.class(), Class::NonRetryable, "{err}");
            assert!(err.to_string().contains("ResponseURL"), "{err}");
            assert!(eks.calls.lock().unwrap().is_empty());
            assert!(answers.sent.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_principal_other_than_the_stacks_roles_gets_no_entry_and_a_failed_answer() {
        let (eks, answers) = (FakeEks::default(), Answers::default());
        let mut event = sample("create.json");
        event["ResourceProperties"]["PrincipalArn"] =
            serde_json::json!("arn:aws:iam::111122223333:role/attacker");
        let s = handle(event, BUDGET, &allowed(), &eks, &answers)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Failed);
        assert!(s.reason.unwrap().contains("ALLOWED_PRINCIPALS"));
        assert!(eks.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn create_grants_every_listed_cluster_and_answers_success() {
        let (eks, answers) = (FakeEks::default(), Answers::default());
        let s = handle(sample("create.json"), BUDGET, &allowed(), &eks, &answers)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Success);
        let mut calls = eks.calls.lock().unwrap().clone();
        calls.sort();
        assert_eq!(
            calls,
            [
                "ensure dev-eks bridgekeeper:dns-sync",
                "ensure prod-eks bridgekeeper:dns-sync",
                "ensure staging-eks bridgekeeper:dns-sync",
                "ensure tools-eks bridgekeeper:dns-sync"
            ]
        );
        let sent = answers.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0]
                .0
                .starts_with("https://cloudformation-custom-resource-response-")
        );
        assert_eq!(
            sent[0].1.physical_resource_id,
            format!("access-entries:{ROLE}")
        );
        assert_eq!(sent[0].1.logical_resource_id, "DnsSyncAccess");
    }

    #[tokio::test]
    async fn update_removes_dropped_clusters_and_keeps_the_rest() {
        let (eks, answers) = (FakeEks::default(), Answers::default());
        let s = handle(sample("update.json"), BUDGET, &allowed(), &eks, &answers)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Success);
        let calls = eks.calls.lock().unwrap();
        assert!(
            calls.contains(&"remove staging-eks".to_owned()),
            "{calls:?}"
        );
        assert!(
            !calls.iter().any(|c| c.contains("remove dev-eks")),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_cluster_fails_the_resource_with_its_name_and_error() {
        let eks = FakeEks {
            fail_on: Some("staging-eks"),
            ..FakeEks::default()
        };
        let answers = Answers::default();
        let s = handle(sample("create.json"), BUDGET, &allowed(), &eks, &answers)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Failed);
        let reason = answers.sent.lock().unwrap()[0].1.reason.clone().unwrap();
        assert!(
            reason.starts_with("staging-eks: eks:CreateAccessEntry failed"),
            "{reason}"
        );
        assert!(
            reason.contains("No cluster found for name: staging-eks"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn invalid_properties_fail_without_calling_eks() {
        let mut event = sample("create.json");
        event["ResourceProperties"]["PrincipalArn"] = "not-an-arn".into();
        let (eks, answers) = (FakeEks::default(), Answers::default());
        let s = handle(event, BUDGET, &allowed(), &eks, &answers)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Failed);
        assert!(eks.calls.lock().unwrap().is_empty());
        assert!(s.reason.unwrap().contains("PrincipalArn"));
    }

    #[tokio::test]
    async fn delete_with_invalid_properties_succeeds_so_the_stack_can_go() {
        let mut event = sample("delete.json");
        event["ResourceProperties"]["PrincipalArn"] = "not-an-arn".into();
        let (eks, answers) = (FakeEks::default(), Answers::default());
        let s = handle(event, BUDGET, &allowed(), &eks, &answers)
            .await
            .unwrap();
        assert_eq!(s.status, Status::Success);
        assert!(eks.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn running_out_of_time_still_answers() {
        let eks = FakeEks {
            hang: true,
            ..FakeEks::default()
        };
        let answers = Answers::default();
        let s = handle(
            sample("create.json"),
            Duration::from_millis(20),
            &allowed(),
            &eks,
            &answers,
        )
        .await
        .unwrap();
        assert_eq!(s.status, Status::Failed);
        assert!(s.reason.unwrap().contains("timed out"));
        assert_eq!(answers.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unanswered_request_is_retried() {
        let answers = Answers {
            broken: true,
            ..Answers::default()
        };
        let err = handle(
            sample("delete.json"),
            BUDGET,
            &allowed(),
            &FakeEks::default(),
            &answers,
        )
        .await
        .unwrap_err();
        assert_eq!(err.class(), Class::Retryable);
    }

    #[tokio::test]
    async fn a_foreign_event_is_rejected_without_side_effects() {
        let eks = FakeEks::default();
        let err = handle(
            serde_json::json!({"source": "aws.ecr", "detail": {}}),
            BUDGET,
            &allowed(),
            &eks,
            &Answers::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert!(eks.calls.lock().unwrap().is_empty());
    }
}
