//! The S3 adapter: what RDS wrote at the top of an export's folder (its info files and one
//! folder per database), read in the hub's export bucket with the function's own role.

use std::future::Future;

use bridgekeeper::AwsError;
use bridgekeeper::classify::SdkResultExt;

/// The top of an export's folder: the files there, and the folders below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folder {
    pub files: Vec<String>,
    pub folders: Vec<String>,
}

pub trait ExportFiles: Send + Sync {
    /// One level of `prefix` (ending in `/`).
    fn folder(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Folder, AwsError>> + Send;
    fn read(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<u8>, AwsError>> + Send;
}

pub struct S3Files {
    client: aws_sdk_s3::Client,
}

impl S3Files {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Files { client }
    }

    /// For the SDK configuration the function loaded: path-style addressing when an endpoint is
    /// given (a local stand-in has no per-bucket host names), virtual-hosted on AWS.
    pub fn from_conf(sdk: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        S3Files::new(aws_sdk_s3::Client::from_conf(conf))
    }
}

/// An info file is a few KB per thousand tables; past this it is not RDS's.
const MAX_INFO_BYTES: usize = 16 << 20;

impl ExportFiles for S3Files {
    async fn folder(&self, bucket: &str, prefix: &str) -> Result<Folder, AwsError> {
        // With a delimiter one page names every database folder (a handful) and the info files.
        let pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let pages: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("s3:ListBucket")?;
        let mut out = Folder::default();
        for page in pages {
            out.files.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            out.folders.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(str::to_owned)),
            );
        }
        Ok(out)
    }

    async fn read(&self, bucket: &str, key: &str) -> Result<Vec<u8>, AwsError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .context("s3:GetObject")?;
        if out
            .content_length()
            .is_some_and(|n| n as usize > MAX_INFO_BYTES)
        {
            return Ok(Vec::new());
        }
        let body = out.body.collect().await.map_err(|e| AwsError {
            operation: "s3:GetObject",
            code: Some("ResponseBodyUnreadable".into()),
            message: Some(e.to_string()),
            request_id: None,
            status: None,
            class: bridgekeeper::Class::Retryable,
            source: Box::new(e),
        })?;
        Ok(body.into_bytes().to_vec())
    }
}
