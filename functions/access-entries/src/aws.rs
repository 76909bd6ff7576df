//! The EKS access entry API, made idempotent: CloudFormation invokes asynchronously and may
//! deliver the same request twice, and a retried Create finds the entry it made the first time.

use bridgekeeper::AwsError;
use bridgekeeper::classify::SdkResultExt;
use serde::Serialize;
use tracing::info;

/// What one call did to one cluster's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Created,
    /// It existed already (an earlier delivery of the same request): its groups were set.
    Updated,
    Deleted,
    /// Nothing to delete: the entry or the cluster is gone.
    AlreadyGone,
}

#[allow(async_fn_in_trait)]
pub trait AccessEntries {
    async fn ensure(
        &self,
        cluster: &str,
        principal_arn: &str,
        groups: &[String],
    ) -> Result<Outcome, AwsError>;
    async fn remove(&self, cluster: &str, principal_arn: &str) -> Result<Outcome, AwsError>;
}

pub struct Eks {
    client: aws_sdk_eks::Client,
}

impl Eks {
    pub fn new(client: aws_sdk_eks::Client) -> Self {
        Eks { client }
    }
}

impl AccessEntries for Eks {
    async fn ensure(
        &self,
        cluster: &str,
        principal_arn: &str,
        groups: &[String],
    ) -> Result<Outcome, AwsError> {
        let created = self
            .client
            .create_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .r#type("STANDARD")
            .set_kubernetes_groups(Some(groups.to_vec()))
            .send()
            .await;
        match created {
            Ok(_) => {
                info!(cluster, principal = principal_arn, "access entry created");
                Ok(Outcome::Created)
            }
            // One entry per principal and cluster (EKS API reference): it is ours from an earlier
            // delivery, or the groups changed; UpdateAccessEntry sets them.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                self.client
                    .update_access_entry()
                    .cluster_name(cluster)
                    .principal_arn(principal_arn)
                    .set_kubernetes_groups(Some(groups.to_vec()))
                    .send()
                    .await
                    .context("eks:UpdateAccessEntry")?;
                info!(cluster, principal = principal_arn, "access entry updated");
                Ok(Outcome::Updated)
            }
            Err(e) => Err(AwsError::from_sdk("eks:CreateAccessEntry", e)),
        }
    }

    async fn remove(&self, cluster: &str, principal_arn: &str) -> Result<Outcome, AwsError> {
        let deleted = self
            .client
            .delete_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .send()
            .await;
        match deleted {
            Ok(_) => {
                info!(cluster, principal = principal_arn, "access entry deleted");
                Ok(Outcome::Deleted)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(Outcome::AlreadyGone)
            }
            Err(e) => Err(AwsError::from_sdk("eks:DeleteAccessEntry", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eks::operation::create_access_entry::CreateAccessEntryError;
    use aws_sdk_eks::operation::delete_access_entry::DeleteAccessEntryError;
    use aws_sdk_eks::types::error::{ResourceInUseException, ResourceNotFoundException};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use bridgekeeper::Class;

    const ROLE: &str = "arn:aws:iam::111122223333:role/fn";

    #[tokio::test]
    async fn an_entry_from_an_earlier_delivery_gets_its_groups_set() {
        let create = mock!(aws_sdk_eks::Client::create_access_entry).then_error(|| {
            CreateAccessEntryError::ResourceInUseException(
                ResourceInUseException::builder()
                    .message(
                        "The specified access entry resource is already in use on this cluster.",
                    )
                    .build(),
            )
        });
        let update = mock!(aws_sdk_eks::Client::update_access_entry)
            .match_requests(|r| {
                r.cluster_name() == Some("prod") && r.kubernetes_groups() == ["g".to_owned()]
            })
            .then_output(|| {
                aws_sdk_eks::operation::update_access_entry::UpdateAccessEntryOutput::builder()
                    .build()
            });
        let client = mock_client!(aws_sdk_eks, RuleMode::MatchAny, [&create, &update]);
        let outcome = Eks::new(client)
            .ensure("prod", ROLE, &["g".to_owned()])
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Updated);
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn deleting_what_is_gone_succeeds() {
        let delete = mock!(aws_sdk_eks::Client::delete_access_entry).then_error(|| {
            DeleteAccessEntryError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("No cluster found for name: gone.")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_eks, [&delete]);
        let outcome = Eks::new(client).remove("gone", ROLE).await.unwrap();
        assert_eq!(outcome, Outcome::AlreadyGone);
    }

    #[tokio::test]
    async fn a_missing_cluster_on_create_is_not_retryable_and_named() {
        let create = mock!(aws_sdk_eks::Client::create_access_entry).then_error(|| {
            CreateAccessEntryError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("No cluster found for name: typo.")
                    .meta(
                        aws_smithy_types::error::ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .message("No cluster found for name: typo.")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_eks, [&create]);
        let err = Eks::new(client)
            .ensure("typo", ROLE, &["g".to_owned()])
            .await
            .unwrap_err();
        assert_eq!(err.class, Class::NonRetryable);
        assert!(
            err.to_string().contains("No cluster found for name: typo"),
            "{err}"
        );
    }
}
