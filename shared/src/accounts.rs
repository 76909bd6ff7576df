//! Other accounts and regions (hub and spoke): the SDK configuration to act in a member account,
//! through the role the member stack created for this function.
//!
//! The hub's own account, and a target that names no account, use the function's own
//! credentials: a single-account stack needs no role and sees no change. A member account's
//! credentials come from `aws-config`'s [`AssumeRoleProvider`], kept until five minutes before
//! they expire; each (account, region) is built once, on first use, and shared by every client
//! and every EKS token that acts there.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::{Mutex, OnceCell};
use tracing::info;

use crate::classify::{Class, Classify, classify_service};
use crate::config::{ConfigError, Env};

/// The hub's own account id; the template sets it from `AWS::AccountId`.
pub const ACCOUNT_VAR: &str = "ACCOUNT_ID";
/// The name of the role each member stack creates for this function (`bridgekeeper-dns-sync`),
/// without the region the member stack appends (`bridgekeeper-dns-sync-eu-west-1`).
pub const ROLE_VAR: &str = "MEMBER_ROLE_NAME";
/// The `sts:ExternalId` the member roles require, if they require one.
pub const EXTERNAL_ID_VAR: &str = "MEMBER_EXTERNAL_ID";

/// Assumed credentials are replaced this long before they expire, so none expires mid-call
/// (the SDK's own lazy cache uses the same margin).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Where to act: an account and a region, each `None` for the function's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub account: Option<String>,
    pub region: Option<String>,
}

impl Scope {
    pub fn account(account: impl Into<String>) -> Self {
        Scope {
            account: Some(account.into()),
            region: None,
        }
    }

    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.account, &self.region) {
            (None, None) => f.write_str("this account"),
            (Some(a), None) => write!(f, "account {a}"),
            (None, Some(r)) => write!(f, "this account in {r}"),
            (Some(a), Some(r)) => write!(f, "account {a} in {r}"),
        }
    }
}

/// An AWS account id: exactly 12 digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `var`: member accounts, comma-separated, each a 12-digit id or `name=id` (`staging=2222...`);
/// (name, id) pairs, a bare id named by itself. Acting in them needs [`ROLE_VAR`].
pub fn member_accounts(env: &Env, var: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in env.list(var) {
        let (name, account) = match item.split_once('=') {
            Some((name, account)) => (name.trim(), account.trim()),
            None => (item.as_str(), item.as_str()),
        };
        if !is_account_id(account) {
            return Err(ConfigError::new(
                var,
                format!("entry {item:?}: {account:?} is not a 12-digit account id"),
            ));
        }
        if out.iter().any(|(n, a)| a == account || n == name) {
            return Err(ConfigError::new(
                var,
                format!("entry {item:?} appears twice"),
            ));
        }
        out.push((name.to_owned(), account.to_owned()));
    }
    let own = env.optional(ACCOUNT_VAR);
    if out.iter().any(|(_, a)| Some(a) != own.as_ref()) {
        env.required(ROLE_VAR)?;
    }
    Ok(out)
}

/// The accounts whose events a function acts on: the hub's own ([`ACCOUNT_VAR`]) and those
/// listed in `MEMBER_ACCOUNTS` (named by `MEMBER_ACCOUNT_NAMES` where it names them). An event's
/// `account` is what the sender wrote: the bus policy and the rules keep others out, and this is
/// the same rule in code, so a rule or bus policy loosened by hand, or a direct
/// `lambda:InvokeFunction`, still cannot make a function act for an account it does not serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admitted {
    own: Option<String>,
    /// (name, id); a member without a name is named by its id.
    members: Vec<(String, String)>,
}

/// An event of an account the function does not serve (a NonRetryable invalid event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotServed(pub String);

impl Classify for NotServed {
    fn class(&self) -> Class {
        Class::NonRetryable
    }

    fn kind(&self) -> &'static str {
        "InvalidEvent"
    }
}

/// Where an admitted event came from, for notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub account: String,
    /// `hub`, or the member's name (its id when unnamed).
    pub name: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == self.account {
            write!(f, "account {}", self.account)
        } else {
            write!(f, "account {} ({})", self.account, self.name)
        }
    }
}

impl Origin {
    /// `n` naming where its event came from: a last line for people, and the `account` and
    /// `account_name` attributes for subscription filters.
    pub fn stamp(&self, n: crate::notify::Notification) -> crate::notify::Notification {
        let mut n = n
            .attribute("account", &self.account)
            .attribute("account_name", &self.name);
        n.body = format!("{}\n\nFrom {self}.", n.body.trim_end());
        n
    }
}

impl Admitted {
    pub fn from_env(env: &Env) -> Result<Admitted, ConfigError> {
        let members = member_accounts(env, "MEMBER_ACCOUNTS")?;
        let names = member_accounts(env, "MEMBER_ACCOUNT_NAMES")?;
        if let Some((name, account)) = names
            .iter()
            .find(|(_, id)| !members.iter().any(|(_, a)| a == id))
        {
            return Err(ConfigError::new(
                "MEMBER_ACCOUNT_NAMES",
                format!("names {account} ({name}), which is not in MEMBER_ACCOUNTS"),
            ));
        }
        let members = members
            .into_iter()
            .map(|(name, account)| {
                let name = names
                    .iter()
                    .find(|(_, id)| *id == account)
                    .map_or(name, |(n, _)| n.clone());
                (name, account)
            })
            .collect();
        Ok(Admitted {
            own: env.optional(ACCOUNT_VAR),
            members,
        })
    }

    /// The hub `own` and `members` (name, id).
    pub fn new(own: Option<String>, members: Vec<(String, String)>) -> Admitted {
        Admitted { own, members }
    }

    /// (name, id) of every member account.
    pub fn members(&self) -> &[(String, String)] {
        &self.members
    }

    /// Who sent an event from `account`, or a NonRetryable error naming it. Without
    /// [`ACCOUNT_VAR`] (a local run) every account is admitted as the function's own.
    pub fn check(&self, account: Option<&str>) -> Result<Origin, NotServed> {
        let Some(own) = &self.own else {
            // Which account is the hub is not known: name the account by its id only.
            let account = account.unwrap_or("unknown").to_owned();
            return Ok(Origin {
                name: account.clone(),
                account,
            });
        };
        let Some(account) = account else {
            return Err(NotServed(
                "the event names no account; only events of this account and MEMBER_ACCOUNTS are acted on"
                    .into(),
            ));
        };
        if account == own {
            return Ok(Origin {
                account: account.to_owned(),
                name: "hub".into(),
            });
        }
        match self.members.iter().find(|(_, id)| id == account) {
            Some((name, _)) => Ok(Origin {
                account: account.to_owned(),
                name: name.clone(),
            }),
            None => Err(NotServed(format!(
                "an event from account {account:?}, which is neither this account ({own}) nor in \
                 MEMBER_ACCOUNTS; nothing done"
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "account {account}: cannot assume role {role}: {reason} (is the member stack deployed \
         there, trusting this function's role{}?)",
        if *.external_id { " with the same external id" } else { "" }
    )]
    AssumeRole {
        account: String,
        role: String,
        reason: String,
        class: Class,
        external_id: bool,
        #[source]
        source: CredentialsError,
    },
    #[error(
        "account {account}: {ROLE_VAR} is not set, so this function has no role to act in other \
         accounts; set the stack's MemberAccounts parameter"
    )]
    NoRole { account: String },
}

impl AccountError {
    /// As the failed AWS call it is (`sts:AssumeRole`), for adapters whose callers expect one.
    pub fn into_aws(self) -> crate::classify::AwsError {
        crate::classify::AwsError {
            operation: "sts:AssumeRole",
            code: None,
            message: Some(self.to_string()),
            request_id: None,
            status: None,
            class: self.class(),
            source: Box::new(self),
        }
    }
}

impl Classify for AccountError {
    fn class(&self) -> Class {
        match self {
            AccountError::AssumeRole { class, .. } => *class,
            AccountError::NoRole { .. } => Class::NonRetryable,
        }
    }

    fn kind(&self) -> &'static str {
        "Account"
    }
}

/// What STS said, and whether asking again can help: a refusal (AccessDenied: no such role, a
/// trust policy that does not name us, a wrong external id) will not change on retry.
fn assume_role_failure(err: &CredentialsError) -> (String, Class) {
    use std::error::Error as _;
    match err {
        CredentialsError::ProviderError(_) => {
            match err
                .source()
                .and_then(|s| s.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>())
            {
                Some(SdkError::TimeoutError(_) | SdkError::DispatchFailure(_)) => {
                    ("STS could not be reached".into(), Class::Retryable)
                }
                Some(sdk) => {
                    let status = sdk.raw_response().map(|r| r.status().as_u16());
                    let code = sdk.code().unwrap_or("no error code");
                    let reason = match sdk.message() {
                        Some(m) => format!("{code} ({m})"),
                        None => code.to_owned(),
                    };
                    (reason, classify_service(sdk.code(), status))
                }
                None => (crate::classify::chain(err), Class::Retryable),
            }
        }
        CredentialsError::ProviderTimedOut(_) => ("STS timed out".into(), Class::Retryable),
        CredentialsError::InvalidConfiguration(_) | CredentialsError::CredentialsNotLoaded(_) => {
            (crate::classify::chain(err), Class::NonRetryable)
        }
        _ => (crate::classify::chain(err), Class::Retryable),
    }
}

/// A member role's credentials from the SDK's [`AssumeRoleProvider`], kept until
/// [`REFRESH_BEFORE`] their expiry. The service clients cache identities themselves, but an EKS
/// token is signed outside any client, so without this every token would cost an AssumeRole.
#[derive(Debug)]
struct Assumed {
    provider: AssumeRoleProvider,
    current: Mutex<Option<Credentials>>,
}

impl ProvideCredentials for Assumed {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let mut current = self.current.lock().await;
            if let Some(c) = current.as_ref()
                && c.expiry()
                    .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
            {
                return Ok(c.clone());
            }
            let fresh = self.provider.provide_credentials().await?;
            *current = Some(fresh.clone());
            Ok(fresh)
        })
    }
}

struct Inner {
    own: SdkConfig,
    own_account: Option<String>,
    role: Option<String>,
    external_id: Option<String>,
    session: String,
    built: std::sync::Mutex<HashMap<Scope, Arc<OnceCell<SdkConfig>>>>,
}

/// The SDK configuration for each (account, region) this function acts in; cheap to clone.
#[derive(Clone)]
pub struct Accounts(Arc<Inner>);

impl Accounts {
    /// One account, as before hub and spoke: every account an event or target names is taken
    /// for the function's own (local runs, and events/ samples whose account is not this one).
    pub fn single(own: &SdkConfig) -> Self {
        Accounts::new(own, None, None, None, "bridgekeeper")
    }

    /// [`ACCOUNT_VAR`], [`ROLE_VAR`] and [`EXTERNAL_ID_VAR`], all optional.
    pub fn from_env(env: &Env, own: &SdkConfig, function: &str) -> Result<Self, ConfigError> {
        let own_account = env.optional(ACCOUNT_VAR);
        if let Some(a) = &own_account
            && !is_account_id(a)
        {
            return Err(ConfigError::new(
                ACCOUNT_VAR,
                format!("is {a:?}, expected a 12-digit account id"),
            ));
        }
        let role = env.optional(ROLE_VAR);
        // IAM role names: 1-64 characters of letters, digits and +=,.@_- (paths are not used).
        if let Some(r) = &role
            && (r.len() > 64
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)))
        {
            return Err(ConfigError::new(
                ROLE_VAR,
                format!("is {r:?}, expected an IAM role name (not an ARN)"),
            ));
        }
        if role.is_some() && own_account.is_none() {
            return Err(ConfigError::new(
                ACCOUNT_VAR,
                format!(
                    "is not set; {ROLE_VAR} needs it to tell the hub's own account from members"
                ),
            ));
        }
        let external_id = env.optional(EXTERNAL_ID_VAR);
        Ok(Accounts::new(
            own,
            own_account,
            role,
            external_id,
            &format!("bridgekeeper-{function}"),
        ))
    }

    pub fn new(
        own: &SdkConfig,
        own_account: Option<String>,
        role: Option<String>,
        external_id: Option<String>,
        session: &str,
    ) -> Self {
        Accounts(Arc::new(Inner {
            own: own.clone(),
            own_account,
            role,
            external_id,
            session: session.to_owned(),
            built: Default::default(),
        }))
    }

    /// The function's own configuration.
    pub fn own(&self) -> &SdkConfig {
        &self.0.own
    }

    /// Whether `account` is one this function acts in with its own credentials: no account, the
    /// hub's own, or any when the hub's own is not known ([`Accounts::single`]).
    pub fn is_own(&self, account: Option<&str>) -> bool {
        match (account, &self.0.own_account) {
            (Some(a), Some(own)) => a == own,
            _ => true,
        }
    }

    /// `scope` with what is the function's own (its account, its region) left out: the default
    /// scope is here.
    fn key(&self, scope: &Scope) -> Scope {
        let own_region = self.0.own.region().map(|r| r.as_ref());
        Scope {
            account: scope.account.clone().filter(|a| !self.is_own(Some(a))),
            region: scope
                .region
                .clone()
                .filter(|r| Some(r.as_str()) != own_region),
        }
    }

    /// Whether `scope` is where the function is: its own account (or none) and its own region.
    pub fn is_here(&self, scope: &Scope) -> bool {
        self.key(scope) == Scope::default()
    }

    /// The configuration to act in `scope`, built (and for a member account, its role assumed)
    /// on first use. A failure is not kept: the next call tries again.
    pub async fn sdk(&self, scope: &Scope) -> Result<SdkConfig, AccountError> {
        let key = self.key(scope);
        if key == Scope::default() {
            return Ok(self.0.own.clone());
        }
        let cell = self
            .0
            .built
            .lock()
            .expect("accounts lock")
            .entry(key.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.build(&key)).await.cloned()
    }

    async fn build(&self, scope: &Scope) -> Result<SdkConfig, AccountError> {
        let mut config = self.0.own.to_builder();
        if let Some(region) = &scope.region {
            config = config.region(Region::new(region.clone()));
        }
        if let Some(account) = &scope.account {
            let name = self.0.role.as_ref().ok_or_else(|| AccountError::NoRole {
                account: account.clone(),
            })?;
            // The member stack is deployed per account and region, and IAM names are per
            // account: its roles carry their region (`<prefix>-<function>-<region>`).
            let region = scope
                .region
                .as_deref()
                .or(self.0.own.region().map(|r| r.as_ref()))
                .unwrap_or_default();
            let role = format!(
                "arn:{}:iam::{account}:role/{name}-{region}",
                self.partition()
            );
            let mut builder = AssumeRoleProvider::builder(&role)
                .session_name(&self.0.session)
                .configure(&self.0.own);
            if let Some(id) = &self.0.external_id {
                builder = builder.external_id(id);
            }
            let assumed = Assumed {
                provider: builder.build().await,
                current: Mutex::new(None),
            };
            // Assumed now rather than inside the first call, where a refusal would surface as a
            // retryable dispatch failure naming neither the account nor the role.
            assumed.provide_credentials().await.map_err(|source| {
                let (reason, class) = assume_role_failure(&source);
                AccountError::AssumeRole {
                    account: account.clone(),
                    role: role.clone(),
                    reason,
                    class,
                    external_id: self.0.external_id.is_some(),
                    source,
                }
            })?;
            info!(account = %account, role = %role, "member role assumed");
            config = config.credentials_provider(SharedCredentialsProvider::new(assumed));
        }
        Ok(config.build())
    }

    /// Role ARNs name the partition of the account's region (`aws-cn`, `aws-us-gov`).
    fn partition(&self) -> &'static str {
        match self.0.own.region().map(|r| r.as_ref()).unwrap_or_default() {
            r if r.starts_with("cn-") => "aws-cn",
            r if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        }
    }
}

/// A service client for whichever account and region a call is about: the function's own, built
/// once, where that is here; another's, built from its cached configuration, elsewhere.
#[derive(Clone)]
pub struct ScopedClient<C> {
    own: C,
    accounts: Accounts,
    make: fn(&SdkConfig) -> C,
}

impl<C: Clone> ScopedClient<C> {
    /// `make` is the service's `Client::new`.
    pub fn new(accounts: &Accounts, make: fn(&SdkConfig) -> C) -> Self {
        ScopedClient {
            own: make(accounts.own()),
            accounts: accounts.clone(),
            make,
        }
    }

    pub async fn get(&self, scope: &Scope) -> Result<C, AccountError> {
        if self.accounts.is_here(scope) {
            return Ok(self.own.clone());
        }
        Ok((self.make)(&self.accounts.sdk(scope).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::BehaviorVersion;
    use aws_smithy_http_client::test_util::infallible_client_fn;
    use aws_smithy_types::body::SdkBody;

    const HUB: &str = "111111111111";
    const MEMBER: &str = "222222222222";

    type Asked = Arc<std::sync::Mutex<Vec<String>>>;

    /// The review's forged events: an event from an account the stack does not serve (any
    /// account of the organisation could put one on the bus) is refused before anything acts.
    #[test]
    fn events_of_unlisted_accounts_are_refused_and_members_are_named() {
        let env = Env::from_pairs([
            (ACCOUNT_VAR, HUB),
            ("MEMBER_ACCOUNTS", "222222222222,333333333333"),
            ("MEMBER_ACCOUNT_NAMES", "staging=222222222222"),
            (ROLE_VAR, "bridgekeeper-image-rollout"),
        ]);
        let admitted = Admitted::from_env(&env).unwrap();
        assert_eq!(admitted.check(Some(HUB)).unwrap().name, "hub");
        let staging = admitted.check(Some(MEMBER)).unwrap();
        assert_eq!(staging.to_string(), "account 222222222222 (staging)");
        assert_eq!(
            admitted.check(Some("333333333333")).unwrap().to_string(),
            "account 333333333333"
        );
        for forged in [Some("444444444444"), None] {
            let err = admitted.check(forged).unwrap_err();
            assert_eq!(err.class(), crate::Class::NonRetryable, "{err}");
        }
        assert!(
            admitted
                .check(Some("444444444444"))
                .unwrap_err()
                .to_string()
                .contains("444444444444")
        );
    }

    /// The hub's configuration, its STS answering every call with `status` and `body`; the
    /// request bodies (role ARN, external id, ...) are kept.
    async fn hub(status: u16, body: &'static str) -> (SdkConfig, Asked) {
        let asked: Asked = Default::default();
        let kept = asked.clone();
        let http = infallible_client_fn(move |req: http::Request<SdkBody>| {
            let sent = req.body().bytes().unwrap_or_default();
            kept.lock()
                .unwrap()
                .push(String::from_utf8_lossy(sent).into_owned());
            http::Response::builder()
                .status(status)
                .body(SdkBody::from(body))
                .unwrap()
        });
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::for_tests())
            .http_client(http)
            .load()
            .await;
        (sdk, asked)
    }

    fn accounts(sdk: &SdkConfig, external_id: Option<&str>) -> Accounts {
        Accounts::new(
            sdk,
            Some(HUB.into()),
            Some("bridgekeeper-dns-sync".into()),
            external_id.map(str::to_owned),
            "bridgekeeper-dns-sync",
        )
    }

    async fn key_id(sdk: &SdkConfig) -> String {
        let creds = sdk.credentials_provider().unwrap();
        creds
            .provide_credentials()
            .await
            .unwrap()
            .access_key_id()
            .to_owned()
    }

    #[tokio::test]
    async fn a_single_account_stack_takes_every_account_for_its_own() {
        let (sdk, asked) = hub(500, "").await;
        let single = Accounts::single(&sdk);
        let got = single.sdk(&Scope::account("123456789012")).await.unwrap();
        assert_eq!(key_id(&got).await, Credentials::for_tests().access_key_id());
        assert!(asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_hub_account_and_targets_without_an_account_need_no_role() {
        let (sdk, asked) = hub(500, "").await;
        let accounts = accounts(&sdk, None);
        for scope in [
            Scope::default(),
            Scope::account(HUB),
            Scope::account(HUB).in_region("eu-west-1"),
        ] {
            let got = accounts.sdk(&scope).await.unwrap();
            assert_eq!(key_id(&got).await, Credentials::for_tests().access_key_id());
        }
        assert!(
            accounts.is_own(None) && accounts.is_own(Some(HUB)) && !accounts.is_own(Some(MEMBER))
        );
        assert!(
            asked.lock().unwrap().is_empty(),
            "no STS call for the hub's own account"
        );
    }

    #[tokio::test]
    async fn each_member_account_and_region_assumes_its_role_once() {
        let (sdk, asked) = hub(200, ASSUMED).await;
        let accounts = accounts(&sdk, Some("bk-ext-1"));
        let there = Scope::account(MEMBER);
        let elsewhere = Scope::account(MEMBER).in_region("us-east-1");
        for _ in 0..3 {
            let member = accounts.sdk(&there).await.unwrap();
            assert_eq!(key_id(&member).await, "ASIAMEMBER");
            assert_eq!(member.region().unwrap().as_ref(), "eu-west-1");
            let other = accounts.sdk(&elsewhere).await.unwrap();
            assert_eq!(key_id(&other).await, "ASIAMEMBER");
            assert_eq!(other.region().unwrap().as_ref(), "us-east-1");
        }
        // The hub's own account in another region: the function's own credentials, no STS.
        let own_elsewhere = accounts
            .sdk(&Scope::default().in_region("us-east-1"))
            .await
            .unwrap();
        assert_eq!(own_elsewhere.region().unwrap().as_ref(), "us-east-1");
        assert_eq!(
            key_id(&own_elsewhere).await,
            Credentials::for_tests().access_key_id()
        );

        let asked = asked.lock().unwrap();
        assert_eq!(
            asked.len(),
            2,
            "one AssumeRole per (account, region): {asked:?}"
        );
        for (body, region) in asked.iter().zip(["eu-west-1", "us-east-1"]) {
            assert!(body.contains("Action=AssumeRole"), "{body}");
            assert!(
                body.contains(&format!(
                    "RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2Fbridgekeeper-dns-sync-{region}&"
                )),
                "the member role of the target's region: {body}"
            );
            assert!(body.contains("ExternalId=bk-ext-1"), "{body}");
            assert!(
                body.contains("RoleSessionName=bridgekeeper-dns-sync"),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_role_is_a_non_retryable_error_naming_account_and_role() {
        let (sdk, asked) = hub(403, ACCESS_DENIED).await;
        let accounts = accounts(&sdk, Some("wrong-id"));
        let err = accounts.sdk(&Scope::account(MEMBER)).await.unwrap_err();
        assert_eq!(err.class(), Class::NonRetryable);
        let text = crate::classify::chain(&err);
        for part in [
            "account 222222222222",
            "arn:aws:iam::222222222222:role/bridgekeeper-dns-sync-eu-west-1",
            "AccessDenied",
            "with the same external id",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        assert_eq!(err.diagnostic().error_type, "NonRetryable.Account");
        // A refusal is not kept: once the member stack is fixed, the next invocation succeeds.
        let _ = accounts.sdk(&Scope::account(MEMBER)).await;
        assert_eq!(asked.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_throttled_sts_is_retryable() {
        let (sdk, _) = hub(400, THROTTLED).await;
        let err = accounts(&sdk, None)
            .sdk(&Scope::account(MEMBER))
            .await
            .unwrap_err();
        assert_eq!(err.class(), Class::Retryable, "{err}");
    }

    #[tokio::test]
    async fn without_a_member_role_another_account_is_refused_by_name() {
        let (sdk, asked) = hub(200, ASSUMED).await;
        let hub_only = Accounts::new(&sdk, Some(HUB.into()), None, None, "bridgekeeper-dns-sync");
        let err = hub_only.sdk(&Scope::account(MEMBER)).await.unwrap_err();
        assert!(matches!(err, AccountError::NoRole { .. }));
        assert!(err.to_string().contains("account 222222222222"), "{err}");
        assert!(err.to_string().contains(ROLE_VAR), "{err}");
        assert!(asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn settings_are_checked_at_init() {
        let (sdk, _) = hub(200, ASSUMED).await;
        let bad = |pairs: &[(&str, &str)]| {
            Accounts::from_env(&Env::from_pairs(pairs.iter().copied()), &sdk, "dns-sync")
                .err()
                .map(|e| e.var)
        };
        assert_eq!(bad(&[(ACCOUNT_VAR, "12345")]), Some(ACCOUNT_VAR.into()));
        assert_eq!(
            bad(&[(ROLE_VAR, "arn:aws:iam::222222222222:role/x")]),
            Some(ROLE_VAR.into())
        );
        assert_eq!(
            bad(&[(ACCOUNT_VAR, HUB), (ROLE_VAR, "bridgekeeper-dns-sync")]),
            None
        );
        assert_eq!(
            bad(&[(ROLE_VAR, "bridgekeeper-dns-sync")]),
            Some(ACCOUNT_VAR.into())
        );
        assert_eq!(bad(&[]), None);
    }

    const ASSUMED: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:bridgekeeper-dns-sync</AssumedRoleId>
      <Arn>arn:aws:sts::222222222222:assumed-role/bridgekeeper-dns-sync/bridgekeeper-dns-sync</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAMEMBER</AccessKeyId>
      <SecretAccessKey>secret</SecretAccessKey>
      <SessionToken>token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>"#;

    // What STS answers when the trust policy does not admit the caller, the role does not exist,
    // or the external id is wrong: it does not say which.
    const ACCESS_DENIED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:sts::111111111111:assumed-role/hub-DnsSyncFunctionRole/dns-sync is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::222222222222:role/bridgekeeper-dns-sync</Message>
  </Error>
  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
</ErrorResponse>"#;

    const THROTTLED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>
  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c8</RequestId>
</ErrorResponse>"#;
}
