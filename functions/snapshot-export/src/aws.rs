//! The RDS adapter: gathers the facts `domain` decides on and starts the exports it planned.

use std::future::Future;

use aws_sdk_rds::types::Tag;
use bridgekeeper::AwsError;
use bridgekeeper::classify::SdkResultExt;
use bridgekeeper::events::SnapshotKind;
use chrono::{DateTime, Utc};
use tracing::info;

use crate::domain::{Export, ExportTask, Source, SourceInfo, TaskStatus};
use crate::snapshots::Snapshot;

/// What starting an export came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Started {
        status: TaskStatus,
    },
    /// A task with this (deterministic) id exists: a redelivery or a concurrent run got there.
    AlreadyExists,
}

/// The RDS calls snapshot-export makes; the handler is generic over it.
pub trait Rds: Send + Sync {
    fn list_instances(&self) -> impl Future<Output = Result<Vec<SourceInfo>, AwsError>> + Send;
    fn list_clusters(&self) -> impl Future<Output = Result<Vec<SourceInfo>, AwsError>> + Send;
    /// The source's automated and AWS Backup snapshots, and its manual ones when `manual`
    /// (`snapshots::newest_exportable` chooses among them).
    fn snapshots(
        &self,
        source: &Source,
        manual: bool,
    ) -> impl Future<Output = Result<Vec<Snapshot>, AwsError>> + Send;
    /// The instance or cluster a snapshot was taken of: a name like AWS Backup's
    /// `awsbackup:job-<id>` does not say it.
    fn snapshot_source(
        &self,
        kind: SnapshotKind,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// Export tasks whose source is this snapshot.
    fn export_tasks(
        &self,
        snapshot_arn: &str,
    ) -> impl Future<Output = Result<Vec<ExportTask>, AwsError>> + Send;
    /// Every export task of the account in this region (RDS keeps their history): one listing
    /// gives each snapshot's tasks, each source's last successful export and the running ones.
    fn all_exports(&self) -> impl Future<Output = Result<Vec<ExportTask>, AwsError>> + Send;
    fn start_export(
        &self,
        export: &Export,
    ) -> impl Future<Output = Result<Started, AwsError>> + Send;
}

pub struct RdsApi {
    client: aws_sdk_rds::Client,
}

impl RdsApi {
    pub fn new(client: aws_sdk_rds::Client) -> Self {
        RdsApi { client }
    }

    /// An instance's snapshots of one type, or one snapshot by name; each with the instance it
    /// was taken of.
    async fn instance_snapshots(
        &self,
        instance: Option<&str>,
        snapshot: Option<&str>,
        snapshot_type: &str,
    ) -> Result<Vec<(Snapshot, Option<String>)>, AwsError> {
        let pages = self
            .client
            .describe_db_snapshots()
            .set_db_instance_identifier(instance.map(str::to_owned))
            .set_db_snapshot_identifier(snapshot.map(str::to_owned))
            .set_snapshot_type((!snapshot_type.is_empty()).then(|| snapshot_type.to_owned()))
            .into_paginator()
            .items()
            .send();
        let all: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("rds:DescribeDBSnapshots")?;
        Ok(all
            .iter()
            .map(|s| {
                let snap = Snapshot {
                    id: s.db_snapshot_identifier().unwrap_or_default().to_owned(),
                    arn: s.db_snapshot_arn().unwrap_or_default().to_owned(),
                    created: time(s.snapshot_create_time()),
                    snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
                    status: s.status().unwrap_or_default().to_owned(),
                };
                (snap, s.db_instance_identifier().map(str::to_owned))
            })
            .collect())
    }

    async fn cluster_snapshots(
        &self,
        cluster: Option<&str>,
        snapshot: Option<&str>,
        snapshot_type: &str,
    ) -> Result<Vec<(Snapshot, Option<String>)>, AwsError> {
        let pages = self
            .client
            .describe_db_cluster_snapshots()
            .set_db_cluster_identifier(cluster.map(str::to_owned))
            .set_db_cluster_snapshot_identifier(snapshot.map(str::to_owned))
            .set_snapshot_type((!snapshot_type.is_empty()).then(|| snapshot_type.to_owned()))
            .into_paginator()
            .items()
            .send();
        let all: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("rds:DescribeDBClusterSnapshots")?;
        Ok(all
            .iter()
            .map(|s| {
                let snap = Snapshot {
                    id: s
                        .db_cluster_snapshot_identifier()
                        .unwrap_or_default()
                        .to_owned(),
                    arn: s.db_cluster_snapshot_arn().unwrap_or_default().to_owned(),
                    created: time(s.snapshot_create_time()),
                    snapshot_type: s.snapshot_type().unwrap_or_default().to_owned(),
                    status: s.status().unwrap_or_default().to_owned(),
                };
                (snap, s.db_cluster_identifier().map(str::to_owned))
            })
            .collect())
    }
}

fn tags(list: &[Tag]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn time(t: Option<&aws_sdk_rds::primitives::DateTime>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
}

fn task(t: &aws_sdk_rds::types::ExportTask) -> ExportTask {
    ExportTask {
        id: t.export_task_identifier().unwrap_or_default().to_owned(),
        source_arn: t.source_arn().unwrap_or_default().to_owned(),
        status: TaskStatus::parse(t.status().unwrap_or_default()),
        s3_bucket: t.s3_bucket().map(str::to_owned),
        s3_prefix: t.s3_prefix().map(str::to_owned),
        failure_cause: t.failure_cause().map(str::to_owned),
        warning: t.warning_message().map(str::to_owned),
        started: time(t.task_start_time()),
        ended: time(t.task_end_time()),
        size_gb: t.total_extracted_data_in_gb(),
    }
}

impl Rds for RdsApi {
    async fn list_instances(&self) -> Result<Vec<SourceInfo>, AwsError> {
        let pages = self
            .client
            .describe_db_instances()
            .into_paginator()
            .items()
            .send();
        let all: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("rds:DescribeDBInstances")?;
        Ok(all
            .iter()
            .map(|i| SourceInfo {
                id: i.db_instance_identifier().unwrap_or_default().to_owned(),
                kind: SnapshotKind::Instance,
                engine: i.engine().unwrap_or_default().to_owned(),
                tags: tags(i.tag_list()),
                cluster: i.db_cluster_identifier().map(str::to_owned),
                engine_mode: None,
                arn: i.db_instance_arn().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn list_clusters(&self) -> Result<Vec<SourceInfo>, AwsError> {
        let pages = self
            .client
            .describe_db_clusters()
            .into_paginator()
            .items()
            .send();
        let all: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("rds:DescribeDBClusters")?;
        Ok(all
            .iter()
            .map(|c| SourceInfo {
                id: c.db_cluster_identifier().unwrap_or_default().to_owned(),
                kind: SnapshotKind::Cluster,
                engine: c.engine().unwrap_or_default().to_owned(),
                tags: tags(c.tag_list()),
                cluster: None,
                engine_mode: c.engine_mode().map(str::to_owned),
                arn: c.db_cluster_arn().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn snapshots(&self, source: &Source, manual: bool) -> Result<Vec<Snapshot>, AwsError> {
        // One call per type: without a type RDS lists automated and manual ones only. The
        // `awsbackup` type does not apply to Aurora, whose AWS Backup snapshots are `manual`.
        let types: &[&str] = match (source.kind, manual) {
            (SnapshotKind::Instance, false) => &["automated", "awsbackup"],
            (SnapshotKind::Instance, true) => &["automated", "awsbackup", "manual"],
            (SnapshotKind::Cluster, _) => &["automated", "manual"],
        };
        let mut all = Vec::new();
        for t in types {
            let listed = match source.kind {
                SnapshotKind::Instance => {
                    self.instance_snapshots(Some(&source.id), None, t).await?
                }
                SnapshotKind::Cluster => self.cluster_snapshots(Some(&source.id), None, t).await?,
            };
            all.extend(listed.into_iter().map(|(snapshot, _)| snapshot));
        }
        Ok(all)
    }

    async fn snapshot_source(
        &self,
        kind: SnapshotKind,
        snapshot_id: &str,
    ) -> Result<Option<String>, AwsError> {
        // Without a type RDS lists automated and manual snapshots only, by name too.
        let listed = match kind {
            SnapshotKind::Instance => {
                let backup = snapshot_id.starts_with(crate::snapshots::AWS_BACKUP_PREFIX);
                let t = if backup { "awsbackup" } else { "" };
                self.instance_snapshots(None, Some(snapshot_id), t).await
            }
            SnapshotKind::Cluster => self.cluster_snapshots(None, Some(snapshot_id), "").await,
        };
        match listed {
            Ok(found) => Ok(found.into_iter().next().and_then(|(_, of)| of)),
            // Deleted since the event (AWS Backup's retention, a person).
            Err(e)
                if e.code
                    .as_deref()
                    .is_some_and(|c| c.contains("SnapshotNotFound")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn export_tasks(&self, snapshot_arn: &str) -> Result<Vec<ExportTask>, AwsError> {
        let pages = self
            .client
            .describe_export_tasks()
            .source_arn(snapshot_arn)
            .into_paginator()
            .items()
            .send();
        let all: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("rds:DescribeExportTasks")?;
        // Filtered again here: not every implementation of the API honours SourceArn.
        Ok(all
            .iter()
            .map(task)
            .filter(|t| t.source_arn == snapshot_arn)
            .collect())
    }

    async fn all_exports(&self) -> Result<Vec<ExportTask>, AwsError> {
        let pages = self
            .client
            .describe_export_tasks()
            .into_paginator()
            .items()
            .send();
        let all: Vec<_> = pages
            .collect::<Result<_, _>>()
            .await
            .context("rds:DescribeExportTasks")?;
        Ok(all.iter().map(task).collect())
    }

    async fn start_export(&self, e: &Export) -> Result<Started, AwsError> {
        let result = self
            .client
            .start_export_task()
            .export_task_identifier(&e.task_id)
            .source_arn(&e.snapshot_arn)
            .s3_bucket_name(&e.bucket)
            .s3_prefix(&e.prefix)
            .iam_role_arn(&e.role_arn)
            .kms_key_id(&e.kms_key_arn)
            .set_export_only((!e.export_only.is_empty()).then(|| e.export_only.clone()))
            .send()
            .await;
        match result {
            Ok(out) => {
                let status = TaskStatus::parse(out.status().unwrap_or("STARTING"));
                info!(task = %e.task_id, snapshot = %e.snapshot, source = %e.source, location = %e.s3_uri, "export started");
                Ok(Started::Started { status })
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|s| s.is_export_task_already_exists_fault()) =>
            {
                info!(task = %e.task_id, snapshot = %e.snapshot, "export task already exists");
                Ok(Started::AlreadyExists)
            }
            Err(err) => Err(AwsError::from_sdk("rds:StartExportTask", err)),
        }
    }
}

/// What moto cannot do: exports already running, throttling. The real adapter, on a mocked client.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_rds::Client;
    use aws_sdk_rds::config::retry::RetryConfig;
    use aws_sdk_rds::operation::describe_db_clusters::DescribeDbClustersOutput;
    use aws_sdk_rds::operation::describe_db_instances::DescribeDbInstancesOutput;
    use aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput;
    use aws_sdk_rds::operation::describe_export_tasks::DescribeExportTasksOutput;
    use aws_sdk_rds::operation::start_export_task::StartExportTaskOutput;
    use aws_sdk_rds::types::{DbInstance, DbSnapshot};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use bridgekeeper::Class;
    use bridgekeeper::notify::{Notification, Notifier};

    use super::*;
    use crate::account::{Response, handle};
    use crate::config::Config;

    const THROTTLED: &str = "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
        <Message>Rate exceeded</Message></Error><RequestId>req-throttled</RequestId></ErrorResponse>";

    struct Quiet;
    impl Notifier for Quiet {
        async fn notify(&self, _: &Notification) -> Result<String, AwsError> {
            Ok("msg".into())
        }
    }

    fn client(rules: &[&Rule]) -> RdsApi {
        RdsApi::new(mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules, |c| c
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1))
            )))
    }

    fn config() -> Config {
        let env = bridgekeeper::config::Env::from_pairs(crate::fakes::REQUIRED);
        Config::from_env(&env).unwrap()
    }

    /// The entry point on the real adapter: the test config, no notifications, a fresh store.
    async fn deliver(
        rds: &RdsApi,
        event: serde_json::Value,
    ) -> Result<Response, bridgekeeper::Error> {
        let memory = bridgekeeper::idempotency::testing::Memory::default();
        handle(
            event,
            &config(),
            rds,
            &Quiet,
            &memory,
            crate::fakes::no_exports(),
        )
        .await
    }

    fn sample(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    fn instances(n: usize) -> Rule {
        mock!(Client::describe_db_instances).then_output(move || {
            let list = (0..n).map(|i| {
                DbInstance::builder()
                    .db_instance_identifier(format!("db{i}"))
                    .engine("postgres")
                    .tag_list(
                        Tag::builder()
                            .key("bridgekeeper:export")
                            .value("true")
                            .build(),
                    )
                    .build()
            });
            DescribeDbInstancesOutput::builder()
                .set_db_instances(Some(list.collect()))
                .build()
        })
    }

    fn one_snapshot_each() -> Rule {
        mock!(Client::describe_db_snapshots).then_compute_output(|req| {
            let db = req.db_instance_identifier().unwrap_or_default();
            let n: i64 = db.trim_start_matches("db").parse().unwrap_or(0);
            let id = format!("rds:{db}-2026-11-21-02-10");
            DescribeDbSnapshotsOutput::builder()
                .db_snapshots(
                    DbSnapshot::builder()
                        .db_snapshot_arn(format!(
                            "arn:aws:rds:us-east-1:123456789012:snapshot:{id}"
                        ))
                        .db_snapshot_identifier(id)
                        .snapshot_create_time(aws_sdk_rds::primitives::DateTime::from_secs(
                            1_795_000_000 - n * 60,
                        ))
                        .snapshot_type("automated")
                        .status("available")
                        .build(),
                )
                .build()
        })
    }

    #[tokio::test]
    async fn three_running_and_seven_sources_start_two_and_defer_five() {
        let running = aws_sdk_rds::types::ExportTask::builder()
            .status("IN_PROGRESS")
            .source_arn("arn:other");
        let running_rule = mock!(Client::describe_export_tasks)
            .match_requests(|r| r.source_arn().is_none())
            .then_output(move || {
                DescribeExportTasksOutput::builder()
                    .export_tasks(running.clone().export_task_identifier("t1").build())
                    .export_tasks(running.clone().export_task_identifier("t2").build())
                    .export_tasks(running.clone().export_task_identifier("t3").build())
                    .build()
            });
        let none_for_snapshot = mock!(Client::describe_export_tasks)
            .match_requests(|r| r.source_arn().is_some())
            .then_output(|| DescribeExportTasksOutput::builder().build());
        let start = mock!(Client::start_export_task)
            .then_output(|| StartExportTaskOutput::builder().status("STARTING").build());
        let clusters = mock!(Client::describe_db_clusters)
            .then_output(|| DescribeDbClustersOutput::builder().build());
        let (instances, snapshots) = (instances(7), one_snapshot_each());
        let rds = client(&[
            &instances,
            &clusters,
            &snapshots,
            &running_rule,
            &none_for_snapshot,
            &start,
        ]);

        let Response::Schedule(s) = deliver(&rds, serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}))
            .await
            .unwrap()
        else {
            panic!("expected a run summary")
        };
        assert_eq!(
            (s.running_before, s.started.len(), s.deferred.len()),
            (3, 2, 5)
        );
        // db6 has the oldest snapshot (the fake ages them by index), then db5.
        let started: Vec<_> = s.started.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(started, ["db6", "db5"]);
        assert_eq!(start.num_calls(), 2);
        assert_eq!(
            (
                running_rule.num_calls(),
                none_for_snapshot.num_calls(),
                snapshots.num_calls()
            ),
            // One listing of every task: the snapshots' tasks and the running ones alike. Two
            // snapshot listings a source: automated and AWS Backup's.
            (1, 0, 14)
        );
    }

    #[tokio::test]
    async fn throttling_is_retried_by_the_sdk_then_succeeds() {
        let rule = mock!(Client::describe_db_instances)
            .sequence()
            .http_status(400, Some(THROTTLED.into()))
            .times(2)
            .output(|| DescribeDbInstancesOutput::builder().build())
            .build();
        let rds = client(&[&rule]);
        assert_eq!(rds.list_instances().await.unwrap(), vec![]);
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn throttling_until_the_sdk_gives_up_is_a_retryable_error() {
        let rule = mock!(Client::describe_db_instances)
            .sequence()
            .http_status(400, Some(THROTTLED.into()))
            .repeatedly()
            .build();
        let rds = client(&[&rule]);
        let err = rds.list_instances().await.unwrap_err();
        assert_eq!(err.class, Class::Retryable);
        assert_eq!(err.code.as_deref(), Some("Throttling"));
        assert_eq!(rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn server_errors_until_the_sdk_gives_up_fail_the_run_as_retryable() {
        use bridgekeeper::Classify;
        let rule = mock!(Client::describe_db_instances)
            .sequence()
            .http_status(503, None)
            .repeatedly()
            .build();
        let rds = client(&[&rule]);
        let event = serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        let err = deliver(&rds, event).await.unwrap_err();
        assert_eq!(err.diagnostic().error_type, "Retryable.Aws");
    }

    /// RDS's answer for a finished export: the task the event is about is Bridgekeeper's.
    fn completed_task() -> aws_sdk_rds::types::ExportTask {
        aws_sdk_rds::types::ExportTask::builder()
            .export_task_identifier("bk-shop-db-2026-11-21-02-10-0badf00d")
            .source_arn("arn:aws:rds:eu-west-1:123456789012:snapshot:rds:shop-db-2026-11-21-02-10")
            .status("COMPLETE")
            .build()
    }

    /// The real adapter answering an export-completed event: the report, then one free slot
    /// (four running) filled with the waiting source that has waited longest.
    #[tokio::test]
    async fn an_export_completed_event_starts_the_next_waiting_export() {
        // The finished export, and four of the account's exports still holding slots.
        let tasks = mock!(Client::describe_export_tasks).then_output(|| {
            let running = |id: &str| {
                aws_sdk_rds::types::ExportTask::builder()
                    .export_task_identifier(id)
                    .source_arn("arn:aws:rds:eu-west-1:123456789012:snapshot:other")
                    .status("IN_PROGRESS")
                    .build()
            };
            DescribeExportTasksOutput::builder()
                .export_tasks(completed_task())
                .export_tasks(running("a"))
                .export_tasks(running("b"))
                .export_tasks(running("c"))
                .export_tasks(running("d"))
                .build()
        });
        let start = mock!(Client::start_export_task)
            .then_output(|| StartExportTaskOutput::builder().status("STARTING").build());
        let clusters = mock!(Client::describe_db_clusters)
            .then_output(|| DescribeDbClustersOutput::builder().build());
        let (instances, snapshots) = (instances(3), one_snapshot_each());
        let rds = client(&[&tasks, &start, &clusters, &instances, &snapshots]);
        let event = sample(include_str!(
            "../../../events/snapshot-export/export-completed.json"
        ));
        let r = deliver(&rds, event).await.unwrap();
        let Response::ExportEvent {
            next: Some(next), ..
        } = r
        else {
            panic!("{r:?}")
        };
        // db2 has the oldest snapshot of three never-exported sources.
        let started: Vec<&str> = next.started.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(started, ["db2"]);
        assert_eq!(next.deferred.len(), 2);
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_snapshot_created_event_for_an_unselected_source_makes_no_export_call() {
        let tasks = mock!(Client::describe_export_tasks)
            .then_output(|| DescribeExportTasksOutput::builder().build());
        let start = mock!(Client::start_export_task)
            .then_output(|| StartExportTaskOutput::builder().status("STARTING").build());
        let clusters = mock!(Client::describe_db_clusters)
            .then_output(|| DescribeDbClustersOutput::builder().build());
        let instances = instances(2);
        let rds = client(&[&tasks, &start, &clusters, &instances]);
        let event = sample(include_str!(
            "../../../events/snapshot-export/snapshot-created.json"
        ));
        let r = deliver(&rds, event).await.unwrap();
        assert!(
            matches!(r, Response::SnapshotCreated { run: None, .. }),
            "{r:?}"
        );
        assert_eq!((tasks.num_calls(), start.num_calls()), (0, 0));
    }
}
