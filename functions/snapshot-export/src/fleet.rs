//! Hub and spoke: the nightly run covers the function's own account and each account in
//! `MEMBER_ACCOUNTS`, each through the member role there, with its own export role, its own
//! five-export quota and its own report. An RDS event is handled in the account it happened in.
//! Without members this is [`handler::handle`], unchanged.

use std::future::Future;

use bridgekeeper::accounts::{AccountError, Accounts, Scope};
use bridgekeeper::events::{Envelope, SCHEDULED_EVENT};
use bridgekeeper::idempotency::Remember;
use bridgekeeper::notify::Notifier;
use bridgekeeper::{AwsError, Class, Classify, Error};
use serde::Serialize;
use tracing::warn;

use crate::aws::{Rds, RdsApi};
use crate::config::{Config, Member};
use crate::handler::{self, Response};

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
    One(Response),
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

async fn in_member<F: RdsIn, N: Notifier, M: Remember>(
    event: serde_json::Value,
    config: &Config,
    member: &Member,
    members: &F,
    notifier: &N,
    memory: &M,
) -> Result<Response, Error> {
    let within = |e| AccountError::within(&member.name, e);
    let rds = members.rds_in(&member.account).await.map_err(within)?;
    let memory = Scoped {
        inner: memory,
        account: &member.account,
    };
    handler::handle(event, &config.for_member(member), &rds, notifier, &memory)
        .await
        .map_err(within)
}

pub async fn handle<R: Rds, F: RdsIn, N: Notifier, M: Remember>(
    event: serde_json::Value,
    config: &Config,
    own: &R,
    members: &F,
    notifier: &N,
    memory: &M,
) -> Result<Outcome, Error> {
    if config.members.is_empty() {
        return handler::handle(event, config, own, notifier, memory)
            .await
            .map(Outcome::One);
    }
    let envelope = Envelope::of(&event)?;
    if envelope.kind() != SCHEDULED_EVENT {
        let origin = envelope.origin().account;
        let member = config
            .members
            .iter()
            .find(|m| origin.as_deref() == Some(m.account.as_str()));
        let response = match member {
            Some(m) => in_member(event, config, m, members, notifier, memory).await,
            None => handler::handle(event, config, own, notifier, memory).await,
        };
        return response.map(Outcome::One);
    }

    // Each account has its own quota and its own role: one failing never holds the others back.
    let own_run = handler::handle(event.clone(), config, own, notifier, memory);
    let member_runs = config.members.iter().map(|m| async {
        let run = in_member(event.clone(), config, m, members, notifier, memory).await;
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
                    error: Some(bridgekeeper::error::chain(&e)),
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
