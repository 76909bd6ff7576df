//! Hub and spoke: the nightly run covers the function's own account and each account in
//! `MEMBER_ACCOUNTS`, each through the member role there, with its own export role, its own
//! five-export quota and its own report. An RDS event is handled in the account it happened in.
//! Without members this is [`account::handle`], unchanged.

use std::future::Future;

use bridgekeeper::accounts::{Accounts, Origin, Scope};
use bridgekeeper::events::Envelope;
use bridgekeeper::idempotency::Remember;
use bridgekeeper::notify::{Notification, Notifier};
use bridgekeeper::{AwsError, Class, Classify, Error};
use serde::Serialize;
use tracing::warn;

use crate::account::{self, Response};
use crate::aws::{Rds, RdsApi};
use crate::completion::Exports;
use crate::config::{Config, Member};
use crate::files::ExportFiles;
use crate::glue::Catalog;

/// A member account's RDS, reached through the member role.
pub trait RdsIn: Send + Sync {
    type Rds: Rds;
    fn rds_in(&self, account: &str) -> impl Future<Output = Result<Self::Rds, Error>> + Send;
}

pub struct MemberRds(pub Accounts);

impl RdsIn for MemberRds {
    type Rds = RdsApi;

    async fn rds_in(&self, account: &str) -> Result<RdsApi, Error> {
        let sdk = self.0.sdk(&Scope::account(account)).await?;
        Ok(RdsApi::new(aws_sdk_rds::Client::new(&sdk)))
    }
}

/// The Lambda's response: as before for one account, one entry per account for a nightly run
/// over several.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    One(Box<Response>),
    Accounts { accounts: Vec<AccountRun> },
}

#[derive(Debug, Serialize)]
pub struct AccountRun {
    /// The member's name (`staging`), or `this account`.
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Response>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a member's run remembers (which sources were reported overdue) is kept apart from the
/// others': two accounts may have databases of one name.
struct Scoped<'a, M> {
    inner: &'a M,
    account: &'a str,
}

impl<M: Remember> Remember for Scoped<'_, M> {
    async fn recall(&self, key: &str) -> Result<Option<String>, AwsError> {
        self.inner.recall(&format!("{}#{key}", self.account)).await
    }

    async fn remember(&self, key: &str, value: &str) -> Result<(), AwsError> {
        self.inner
            .remember(&format!("{}#{key}", self.account), value)
            .await
    }
}

/// Every report says which account it is about: a last line naming it, and the `account` and
/// `account_name` message attributes (for subscription filters).
struct InAccount<'a, N> {
    inner: &'a N,
    origin: Origin,
}

impl<N: Notifier> Notifier for InAccount<'_, N> {
    async fn notify(&self, n: &Notification) -> Result<String, AwsError> {
        self.inner.notify(&self.origin.stamp(n.clone())).await
    }
}

async fn in_member<F: RdsIn, N: Notifier, M: Remember, X: ExportFiles, G: Catalog>(
    event: serde_json::Value,
    config: &Config,
    member: &Member,
    members: &F,
    notifier: &N,
    memory: &M,
    exports: Exports<'_, X, G>,
) -> Result<Response, Error> {
    let within = |e: Error| e.within(&member.name);
    let rds = members.rds_in(&member.account).await.map_err(within)?;
    let memory = Scoped {
        inner: memory,
        account: &member.account,
    };
    let notifier = InAccount {
        inner: notifier,
        origin: Origin {
            account: member.account.clone(),
            name: member.name.clone(),
        },
    };
    // The export bucket and the catalog are the hub's: read and written with the hub's role.
    let member_config = config.for_member(member);
    account::handle(event, &member_config, &rds, &notifier, &memory, exports)
        .await
        .map_err(within)
}

pub async fn handle<R: Rds, F: RdsIn, N: Notifier, M: Remember, X: ExportFiles, G: Catalog>(
    event: serde_json::Value,
    config: &Config,
    own: &R,
    members: &F,
    notifier: &N,
    memory: &M,
    exports: Exports<'_, X, G>,
) -> Result<Outcome, Error> {
    let envelope = Envelope::of(&event)?;
    // An event of an account this stack does not cover (a member stack forwarding to a hub that
    // does not list it, or any account of the organisation) is not ours to act on or report.
    let origin = config.admitted.check(envelope.account())?;
    // The hub's own run reports as the event's account: the hub's (a schedule, its own RDS).
    let own_notifier = InAccount {
        inner: notifier,
        origin,
    };
    let scheduled = bridgekeeper::events::scheduled(envelope.kind());
    if config.members.is_empty() || !scheduled {
        let origin = envelope.origin().account;
        let member = config
            .members
            .iter()
            .find(|m| origin.as_deref() == Some(m.account.as_str()));
        let response = match member {
            Some(m) => in_member(event, config, m, members, notifier, memory, exports).await,
            None => account::handle(event, config, own, &own_notifier, memory, exports).await,
        };
        return response.map(|r| Outcome::One(Box::new(r)));
    }

    // Each account has its own quota and its own role: one failing never holds the others back.
    let own_run = account::handle(event.clone(), config, own, &own_notifier, memory, exports);
    let member_runs = config.members.iter().map(|m| async {
        let run = in_member(event.clone(), config, m, members, notifier, memory, exports).await;
        (m.name.clone(), run)
    });
    let (own_run, member_runs) = futures::join!(own_run, futures::future::join_all(member_runs));
    let mut accounts = Vec::new();
    let mut failed: Option<Error> = None;
    for (name, run) in std::iter::once(("this account".to_owned(), own_run)).chain(member_runs) {
        match run {
            Ok(run) => accounts.push(AccountRun {
                account: name,
                run: Some(run),
                error: None,
            }),
            Err(e) => {
                warn!(account = %name, error = %e, "account's nightly run failed");
                accounts.push(AccountRun {
                    account: name.clone(),
                    run: None,
                    error: Some(bridgekeeper::classify::chain(&e)),
                });
                // A retryable failure wins: the retry re-runs every account, which starts nothing
                // twice (deterministic task ids) and reports nothing twice (no news).
                if failed
                    .as_ref()
                    .is_none_or(|f| f.class() == Class::NonRetryable)
                {
                    failed = Some(e);
                }
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(Outcome::Accounts { accounts }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use bridgekeeper::config::Env;
    use bridgekeeper::notify::testing::Recorder;

    use super::*;
    use crate::domain::{Export, ExportTask, Source, SourceInfo};
    use crate::fakes::{COMPLETED, FakeRds, no_exports};
    use crate::snapshots::Snapshot;

    const SCHEDULE: &str = include_str!("../../../events/snapshot-export/schedule.json");
    const SCHEDULER: &str = include_str!("../../../events/snapshot-export/scheduler.json");
    const STAGING: &str = "222222222222";
    const PROD: &str = "333333333333";

    /// A member account's RDS, shared with the test that reads what was started there.
    struct Shared(Arc<FakeRds>);

    impl Rds for Shared {
        async fn list_instances(&self) -> Result<Vec<SourceInfo>, AwsError> {
            self.0.list_instances().await
        }
        async fn list_clusters(&self) -> Result<Vec<SourceInfo>, AwsError> {
            self.0.list_clusters().await
        }
        async fn snapshots(
            &self,
            source: &Source,
            manual: bool,
        ) -> Result<Vec<Snapshot>, AwsError> {
            self.0.snapshots(source, manual).await
        }
        async fn snapshot_source(
            &self,
            kind: bridgekeeper::events::SnapshotKind,
            snapshot_id: &str,
        ) -> Result<Option<String>, AwsError> {
            self.0.snapshot_source(kind, snapshot_id).await
        }
        async fn export_tasks(&self, arn: &str) -> Result<Vec<ExportTask>, AwsError> {
            self.0.export_tasks(arn).await
        }
        async fn all_exports(&self) -> Result<Vec<ExportTask>, AwsError> {
            self.0.all_exports().await
        }
        async fn start_export(&self, e: &Export) -> Result<crate::aws::Started, AwsError> {
            self.0.start_export(e).await
        }
    }

    /// An account that cannot be reached, and the error reaching it gives.
    type Refused = (&'static str, fn(&str) -> Error);

    /// Member accounts' RDS by account.
    #[derive(Default)]
    struct Members {
        rds: HashMap<&'static str, Arc<FakeRds>>,
        refused: Option<Refused>,
    }

    impl RdsIn for Members {
        type Rds = Shared;

        async fn rds_in(&self, account: &str) -> Result<Shared, Error> {
            if let Some((refused, error)) = self.refused
                && refused == account
            {
                return Err(error(account));
            }
            Ok(Shared(self.rds[account].clone()))
        }
    }

    fn config() -> Config {
        let mut vars: Vec<(&str, &str)> = crate::fakes::REQUIRED.to_vec();
        vars.extend([
            ("MEMBER_ACCOUNTS", "staging=222222222222,prod=333333333333"),
            ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
            ("ACCOUNT_ID", "123456789012"),
        ]);
        Config::from_env(&Env::from_pairs(vars)).unwrap()
    }

    fn prefixes(rds: &FakeRds) -> Vec<String> {
        let tasks = rds.tasks.lock().unwrap();
        tasks.iter().filter_map(|t| t.s3_prefix.clone()).collect()
    }

    /// One invocation with the three-account configuration; what it returned, what it sent.
    async fn run(
        event: &str,
        own: &FakeRds,
        members: &Members,
    ) -> (Result<Outcome, Error>, Recorder) {
        let (notifier, memory) = (
            Recorder::default(),
            bridgekeeper::idempotency::testing::Memory::default(),
        );
        let event = serde_json::from_str(event).unwrap();
        let out = handle(
            event,
            &config(),
            own,
            members,
            &notifier,
            &memory,
            no_exports(),
        )
        .await;
        (out, notifier)
    }

    #[tokio::test]
    async fn a_refused_member_holds_no_other_account_back_and_fails_the_run_by_name() {
        let own = FakeRds::with_instances(&["ops-db"]);
        let staging = Arc::new(FakeRds::with_instances(&["orders"]));
        let members = Members {
            rds: HashMap::from([(STAGING, staging.clone())]),
            refused: Some((PROD, |account| {
                bridgekeeper::accounts::AccountError::NoRole {
                    account: account.to_owned(),
                }
                .into()
            })),
        };
        let (err, notifier) = run(SCHEDULE, &own, &members).await;
        let err = err.unwrap_err();
        assert_eq!(err.class(), Class::NonRetryable);
        assert!(err.to_string().contains("account 333333333333"), "{err}");
        // The hub and staging were exported all the same, each under its own prefix.
        assert_eq!(prefixes(&own).len(), 1);
        assert!(prefixes(&own)[0].starts_with("rds-exports/ops-db/"));
        let staged = prefixes(&staging);
        assert_eq!(staged.len(), 1);
        assert!(
            staged[0].starts_with("rds-exports/222222222222/orders/"),
            "{staged:?}"
        );
        let subjects: Vec<String> = notifier.sent().into_iter().map(|n| n.subject).collect();
        assert!(
            subjects.contains(&"[staging] RDS snapshot exports: 1 started".to_owned()),
            "{subjects:?}"
        );
    }

    /// EventBridge Scheduler's Input (ScheduleV2) is the nightly run as the legacy rule's event
    /// was: the hub and every member account export.
    #[tokio::test]
    async fn a_scheduler_run_exports_in_the_hub_and_every_member_as_a_rule_did() {
        for event in [SCHEDULE, SCHEDULER] {
            let own = FakeRds::with_instances(&["ops-db"]);
            let staging = Arc::new(FakeRds::with_instances(&["orders"]));
            let members = Members {
                rds: HashMap::from([
                    (STAGING, staging.clone()),
                    (PROD, Arc::new(FakeRds::with_instances(&["payments"]))),
                ]),
                refused: None,
            };
            let (out, _) = run(event, &own, &members).await;
            assert!(out.is_ok(), "{out:?}");
            assert_eq!(prefixes(&own).len(), 1, "{event}");
            assert_eq!(prefixes(&staging).len(), 1, "{event}");
        }
    }

    #[tokio::test]
    async fn a_retryable_failure_in_one_account_fails_the_run_as_retryable() {
        let own = FakeRds::with_instances(&["ops-db"]);
        let members = Members {
            rds: HashMap::from([(STAGING, Arc::new(FakeRds::with_instances(&["orders"])))]),
            refused: Some((PROD, |_| Error::Transient("STS throttled".into()))),
        };
        let (err, _) = run(SCHEDULE, &own, &members).await;
        let err = err.unwrap_err();
        assert_eq!(err.class(), Class::Retryable, "{err}");
        assert!(err.to_string().contains("account prod"), "{err}");
    }

    #[tokio::test]
    async fn an_rds_event_is_handled_in_the_account_it_came_from() {
        let own = FakeRds::default();
        let staging = Arc::new(FakeRds::default());
        let members = Members {
            rds: HashMap::from([(STAGING, staging.clone())]),
            refused: None,
        };
        let completed = COMPLETED.replace("\"123456789012\"", &format!("\"{STAGING}\""));
        run(&completed, &own, &members).await.0.unwrap();
        assert!(
            own.calls.lock().unwrap().is_empty(),
            "the hub's RDS is not asked"
        );
        assert!(!staging.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_rds_event_from_an_account_not_covered_is_refused_before_any_call() {
        let own = FakeRds::default();
        let staging = Arc::new(FakeRds::default());
        let members = Members {
            rds: HashMap::from([(STAGING, staging.clone())]),
            refused: None,
        };
        let foreign = COMPLETED.replace("\"123456789012\"", "\"999999999999\"");
        let (err, notifier) = run(&foreign, &own, &members).await;
        let err = err.unwrap_err();
        assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
        assert!(
            err.to_string().contains("account \"999999999999\""),
            "{err}"
        );
        assert!(own.calls.lock().unwrap().is_empty());
        assert!(staging.calls.lock().unwrap().is_empty());
        assert!(notifier.sent().is_empty());
    }

    #[tokio::test]
    async fn without_members_the_response_is_the_single_accounts() {
        let mut config = config();
        config.members.clear();
        let own = FakeRds::with_instances(&["ops-db"]);
        let (notifier, memory) = (
            Recorder::default(),
            bridgekeeper::idempotency::testing::Memory::default(),
        );
        let schedule: serde_json::Value = serde_json::from_str(SCHEDULE).unwrap();
        let out = handle(
            schedule,
            &config,
            &own,
            &Members::default(),
            &notifier,
            &memory,
            no_exports(),
        )
        .await
        .unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["trigger"], "schedule", "{json}");
        assert!(matches!(out, Outcome::One(r) if matches!(*r, Response::Schedule(_))));
    }
}
