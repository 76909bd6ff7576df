//! The crate's test doubles, for any of its tests: an RDS that keeps the export tasks it was
//! asked to start, answers listings from fixed sources, and fails where told.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bridgekeeper::AwsError;
use bridgekeeper::events::SnapshotKind;
use chrono::TimeZone;

use crate::aws::{Rds, Started};
use crate::catalog::CatalogTable;
use crate::domain::{Export, ExportTask, Source, SourceInfo, TaskStatus};
use crate::files::{ExportFiles, Folder};
use crate::glue::Catalog;
use crate::snapshots::Snapshot;

/// An export of `rds:shop-db-…` completed, as RDS announces it.
pub const COMPLETED: &str = include_str!("../../../events/snapshot-export/export-completed.json");

#[derive(Default)]
pub struct FakeRds {
    pub instances: Vec<SourceInfo>,
    pub clusters: Vec<SourceInfo>,
    pub snapshots: HashMap<String, Vec<Snapshot>>,
    pub failing: HashMap<String, (&'static str, u16)>,
    pub tasks: Mutex<Vec<ExportTask>>,
    pub running: usize,
    pub calls: Mutex<Vec<String>>,
    /// StartExportTask is throttled once this many have started.
    pub throttled_after: Option<usize>,
}

pub fn aws_error(op: &'static str, code: &str, status: u16) -> AwsError {
    AwsError {
        operation: op,
        code: Some(code.into()),
        message: None,
        request_id: Some("req-1".into()),
        status: Some(status),
        class: bridgekeeper::classify::classify_service(Some(code), Some(status)),
        source: code.to_owned().into(),
    }
}

impl FakeRds {
    pub(crate) fn with_instances(ids: &[&str]) -> Self {
        let mut rds = FakeRds::default();
        for (n, id) in ids.iter().enumerate() {
            rds.instances.push(SourceInfo {
                id: id.to_string(),
                kind: SnapshotKind::Instance,
                engine: "postgres".into(),
                tags: BTreeMap::from([("bridgekeeper:export".into(), "true".into())]),
                cluster: None,
                engine_mode: None,
                arn: format!("arn:aws:rds:eu-west-1:123456789012:db:{id}"),
            });
            let snap_id = format!("rds:{id}-2026-11-2{n}-02-10");
            rds.snapshots.insert(
                id.to_string(),
                vec![Snapshot {
                    arn: format!("arn:aws:rds:eu-west-1:123456789012:snapshot:{snap_id}"),
                    id: snap_id,
                    created: Some(
                        chrono::Utc
                            .with_ymd_and_hms(2026, 11, 20 + n as u32, 2, 10, 0)
                            .unwrap(),
                    ),
                    snapshot_type: "automated".into(),
                    status: "available".into(),
                }],
            );
        }
        rds
    }

    fn call(&self, what: &str) {
        self.calls.lock().unwrap().push(what.to_owned());
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, what: &str) -> usize {
        self.calls().iter().filter(|c| c.as_str() == what).count()
    }
}

impl Rds for FakeRds {
    async fn list_instances(&self) -> Result<Vec<SourceInfo>, AwsError> {
        self.call("DescribeDBInstances");
        Ok(self.instances.clone())
    }
    async fn list_clusters(&self) -> Result<Vec<SourceInfo>, AwsError> {
        self.call("DescribeDBClusters");
        Ok(self.clusters.clone())
    }
    async fn snapshots(&self, source: &Source, _: bool) -> Result<Vec<Snapshot>, AwsError> {
        self.call("DescribeDBSnapshots");
        if let Some((code, status)) = self.failing.get(&source.id) {
            return Err(aws_error("rds:DescribeDBSnapshots", code, *status));
        }
        Ok(self.snapshots.get(&source.id).cloned().unwrap_or_default())
    }
    async fn snapshot_source(
        &self,
        _: SnapshotKind,
        snapshot_id: &str,
    ) -> Result<Option<String>, AwsError> {
        self.call("DescribeDBSnapshots(one)");
        Ok(self
            .snapshots
            .iter()
            .find(|(_, snaps)| snaps.iter().any(|s| s.id == snapshot_id))
            .map(|(source, _)| source.clone()))
    }
    async fn export_tasks(&self, arn: &str) -> Result<Vec<ExportTask>, AwsError> {
        self.call("DescribeExportTasks");
        Ok(self
            .tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.source_arn == arn)
            .cloned()
            .collect())
    }
    async fn all_exports(&self) -> Result<Vec<ExportTask>, AwsError> {
        self.call("DescribeExportTasks(all)");
        if let Some((code, status)) = self.failing.get("DescribeExportTasks") {
            return Err(aws_error("rds:DescribeExportTasks", code, *status));
        }
        // `running` exports of others' snapshots hold slots too.
        let others = (0..self.running).map(|i| ExportTask {
            id: format!("other-running-{i}"),
            source_arn: "arn:aws:rds:eu-west-1:123456789012:snapshot:other".into(),
            status: TaskStatus::InProgress,
            s3_bucket: None,
            s3_prefix: None,
            failure_cause: None,
            warning: None,
            started: None,
            ended: None,
            size_gb: None,
        });
        let mut all = self.tasks.lock().unwrap().clone();
        all.extend(others);
        Ok(all)
    }
    async fn start_export(&self, e: &Export) -> Result<Started, AwsError> {
        self.call("StartExportTask");
        let mut tasks = self.tasks.lock().unwrap();
        if self.throttled_after.is_some_and(|n| tasks.len() >= n)
            && !tasks.iter().any(|t| t.id == e.task_id)
        {
            return Err(aws_error("rds:StartExportTask", "ThrottlingException", 400));
        }
        if tasks.iter().any(|t| t.id == e.task_id) {
            return Ok(Started::AlreadyExists);
        }
        tasks.push(ExportTask {
            id: e.task_id.clone(),
            source_arn: e.snapshot_arn.clone(),
            status: TaskStatus::Starting,
            s3_bucket: Some(e.bucket.clone()),
            s3_prefix: Some(e.prefix.clone()),
            failure_cause: None,
            warning: None,
            started: None,
            ended: None,
            size_gb: None,
        });
        Ok(Started::Started {
            status: TaskStatus::Starting,
        })
    }
}

/// The variables a snapshot-export Config cannot do without, as the hub sets them.
pub const REQUIRED: [(&str, &str); 4] = [
    (
        "ALERTS_TOPIC_ARN",
        "arn:aws:sns:eu-west-1:123456789012:alerts",
    ),
    ("EXPORT_BUCKET", "exports-bucket"),
    ("EXPORT_ROLE_ARN", "arn:aws:iam::123456789012:role/export"),
    (
        "EXPORT_KMS_KEY_ARN",
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd",
    ),
];

/// An export bucket in memory: key → bytes. Folders are what the keys imply.
#[derive(Default)]
pub struct FakeFiles {
    pub objects: BTreeMap<String, Vec<u8>>,
    /// Every call fails as a bucket policy that refuses the role does.
    pub refused: bool,
}

impl FakeFiles {
    /// An export RDS completed at `folder` (ending in `/`), its table list as given, with data
    /// for the tables it exported.
    pub fn export(folder: &str, tables: serde_json::Value) -> Self {
        let mut objects = BTreeMap::new();
        objects.insert(
            format!("{folder}export_tables_info_x_from_1_to_9.json"),
            serde_json::to_vec(&serde_json::json!({ "perTableStatus": tables })).unwrap(),
        );
        objects.insert(format!("{folder}export_info_x.json"), b"{}".to_vec());
        objects.insert(
            format!("{folder}shop/public.orders/1/part-00000.gz.parquet"),
            b"PAR1".to_vec(),
        );
        FakeFiles {
            objects,
            refused: false,
        }
    }
}

impl ExportFiles for FakeFiles {
    async fn folder(&self, _: &str, prefix: &str) -> Result<Folder, AwsError> {
        if self.refused {
            return Err(aws_error("s3:ListBucket", "AccessDenied", 403));
        }
        let mut out = Folder::default();
        for key in self.objects.keys().filter_map(|k| k.strip_prefix(prefix)) {
            match key.split_once('/') {
                Some((dir, _)) => {
                    let dir = format!("{prefix}{dir}/");
                    if !out.folders.contains(&dir) {
                        out.folders.push(dir);
                    }
                }
                None => out.files.push(format!("{prefix}{key}")),
            }
        }
        Ok(out)
    }
    async fn read(&self, _: &str, key: &str) -> Result<Vec<u8>, AwsError> {
        self.objects
            .get(key)
            .cloned()
            .ok_or_else(|| aws_error("s3:GetObject", "NoSuchKey", 404))
    }
}

/// A Glue catalog in memory: database → table → partitions.
#[derive(Default)]
pub struct FakeCatalog {
    pub tables: Mutex<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
}

impl Catalog for FakeCatalog {
    async fn database(&self, name: &str, _: &str) -> Result<(), AwsError> {
        self.tables.lock().unwrap().entry(name.into()).or_default();
        Ok(())
    }
    async fn table(&self, database: &str, t: &CatalogTable) -> Result<(), AwsError> {
        let mut all = self.tables.lock().unwrap();
        let parts = all
            .entry(database.into())
            .or_default()
            .entry(t.name.clone())
            .or_default();
        if !parts.contains(&t.partition_location) {
            parts.push(t.partition_location.clone());
        }
        Ok(())
    }
}

/// No export files, no catalog: for the runs that read neither.
pub fn no_exports() -> crate::completion::Exports<'static, FakeFiles, FakeCatalog> {
    static FILES: std::sync::LazyLock<FakeFiles> = std::sync::LazyLock::new(FakeFiles::default);
    static CATALOG: std::sync::LazyLock<FakeCatalog> =
        std::sync::LazyLock::new(FakeCatalog::default);
    crate::completion::Exports {
        files: &FILES,
        catalog: &CATALOG,
    }
}
