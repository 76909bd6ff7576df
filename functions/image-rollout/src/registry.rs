//! The ECR adapter: which digest a tag points at now. EventBridge delivers late and out of order
//! and ECR's events are best effort; the registry, not the event, says what to roll.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_sdk_ecr::operation::describe_images::DescribeImagesError;
use aws_sdk_ecr::types::{DescribeImagesFilter, ImageIdentifier, TagStatus};
use bridgekeeper::AwsError;
use tracing::warn;

/// What image-rollout asks of a registry; the handler is generic over it.
pub trait Registry: Send + Sync {
    /// The digest `repository:tag` has now in the registry of `account` in `region`; `None` when
    /// the tag (or the repository) no longer exists.
    fn current_digest(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        tag: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;

    /// The tagged images of `repository`, `tag → digest`, as many as `MAX_LISTED_PAGES` pages
    /// hold: what a reconcile catches versions up from. Empty when the repository is gone.
    fn tagged_images(
        &self,
        account: &str,
        region: &str,
        repository: &str,
    ) -> impl Future<Output = Result<crate::catchup::Tags, AwsError>> + Send;

    /// What the pushed tag points at now, in the push's registry.
    fn current_digest_of(
        &self,
        push: &crate::image::Push,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send
    where
        Self: Sync,
    {
        async move {
            let (account, region) =
                crate::image::Push::ecr_parts(&push.registry).unwrap_or_default();
            self.current_digest(account, region, &push.repository, &push.tag)
                .await
        }
    }
}

/// ECR's default quota is 20,000 images per repository ("Amazon ECR service quotas"), and
/// DescribeImages returns at most 1,000 a page: the whole of a repository at the default
/// quota, and a bound on one reconcile's calls when a quota was raised.
pub const MAX_LISTED_PAGES: usize = 20;
const PAGE_SIZE: i32 = 1000;

fn gone(e: &DescribeImagesError) -> bool {
    matches!(
        e,
        DescribeImagesError::ImageNotFoundException(_)
            | DescribeImagesError::RepositoryNotFoundException(_)
    )
}

/// ECR in any region: the push event's `account` and `region` name the registry, which may be
/// another account's (its repository policy must allow `ecr:DescribeImages`) or another region.
pub struct Ecr {
    sdk: SdkConfig,
    clients: Mutex<HashMap<String, aws_sdk_ecr::Client>>,
}

impl Ecr {
    pub fn new(sdk: &SdkConfig) -> Self {
        Ecr {
            sdk: sdk.clone(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, region: &str) -> aws_sdk_ecr::Client {
        let mut clients = self.clients.lock().expect("ecr clients lock");
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let conf = aws_sdk_ecr::config::Builder::from(&self.sdk)
                    .region(aws_config::Region::new(region.to_owned()))
                    .build();
                aws_sdk_ecr::Client::from_conf(conf)
            })
            .clone()
    }
}

impl Registry for Ecr {
    async fn current_digest(
        &self,
        account: &str,
        region: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, AwsError> {
        let out = self
            .client(region)
            .describe_images()
            .registry_id(account)
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        match out {
            Ok(o) => Ok(o
                .image_details()
                .first()
                .and_then(|d| d.image_digest())
                .map(str::to_owned)),
            Err(e) if e.as_service_error().is_some_and(gone) => Ok(None),
            Err(e) => Err(AwsError::from_sdk("ecr:DescribeImages", e)),
        }
    }

    async fn tagged_images(
        &self,
        account: &str,
        region: &str,
        repository: &str,
    ) -> Result<crate::catchup::Tags, AwsError> {
        let mut pages = self
            .client(region)
            .describe_images()
            .registry_id(account)
            .repository_name(repository)
            .filter(
                DescribeImagesFilter::builder()
                    .tag_status(TagStatus::Tagged)
                    .build(),
            )
            .into_paginator()
            .page_size(PAGE_SIZE)
            .send();
        let mut tags = crate::catchup::Tags::new();
        for _ in 0..MAX_LISTED_PAGES {
            let Some(page) = pages.next().await else {
                return Ok(tags);
            };
            let page = match page {
                Ok(p) => p,
                Err(e) if e.as_service_error().is_some_and(gone) => return Ok(tags),
                Err(e) => return Err(AwsError::from_sdk("ecr:DescribeImages", e)),
            };
            for image in page.image_details() {
                let Some(digest) = image.image_digest() else {
                    continue;
                };
                for tag in image.image_tags() {
                    tags.insert(tag.clone(), digest.to_owned());
                }
            }
        }
        warn!(
            repository,
            listed = tags.len(),
            "more images than {MAX_LISTED_PAGES} pages of DescribeImages; versions past them are not seen"
        );
        Ok(tags)
    }
}
