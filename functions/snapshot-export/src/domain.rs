//! Pure decisions: which sources, which snapshot, which export task id, what to start now and
//! what to defer. No I/O here; `aws.rs` gathers the facts and carries out the plan.

use std::collections::{BTreeMap, HashMap};

use bridgekeeper::events::{ExportOutcome, SnapshotKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// RDS's limit on `ExportTaskIdentifier`.
pub const MAX_TASK_ID_LEN: usize = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids {
        instances: Vec<String>,
        clusters: Vec<String>,
    },
    Tag {
        key: String,
        value: String,
    },
}

/// A DB instance or cluster as listed by DescribeDBInstances / DescribeDBClusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    pub id: String,
    pub kind: SnapshotKind,
    pub engine: String,
    pub tags: BTreeMap<String, String>,
    /// For an instance: the cluster it belongs to (its snapshots are the cluster's).
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub id: String,
    pub kind: SnapshotKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub source: String,
    pub reason: String,
}

/// Engines whose snapshots RDS can export to S3.
fn exportable(info: &SourceInfo) -> bool {
    let e = info.engine.as_str();
    match info.kind {
        SnapshotKind::Instance => matches!(e, "mysql" | "mariadb" | "postgres"),
        SnapshotKind::Cluster => e.starts_with("aurora") || matches!(e, "mysql" | "postgres"),
    }
}

/// The sources to export, and what was left out and why. Instances that belong to a cluster are
/// covered by the cluster's snapshot; a listed identifier that does not exist is reported.
pub fn select_sources(
    selection: &Selection,
    instances: &[SourceInfo],
    clusters: &[SourceInfo],
) -> (Vec<Source>, Vec<Skip>) {
    let consider = |info: &SourceInfo| -> Result<Source, Skip> {
        let skip = |reason: String| Skip {
            source: info.id.clone(),
            reason,
        };
        if let Some(cluster) = &info.cluster {
            Err(skip(format!(
                "instance of cluster {cluster}: exported with the cluster's snapshot"
            )))
        } else if !exportable(info) {
            Err(skip(format!(
                "engine {} is not supported by RDS snapshot export",
                info.engine
            )))
        } else {
            Ok(Source {
                id: info.id.clone(),
                kind: info.kind,
            })
        }
    };
    let decided: Vec<Result<Source, Skip>> = match selection {
        Selection::Tag { key, value } => {
            let tagged = |i: &&SourceInfo| i.tags.get(key) == Some(value);
            // Tagged Aurora member instances are covered by their cluster: not worth a line.
            let instances = instances
                .iter()
                .filter(tagged)
                .filter(|i| i.cluster.is_none());
            instances
                .chain(clusters.iter().filter(tagged))
                .map(consider)
                .collect()
        }
        Selection::Ids {
            instances: want_instances,
            clusters: want_clusters,
        } => [
            (want_instances, instances, "DB instance"),
            (want_clusters, clusters, "DB cluster"),
        ]
        .into_iter()
        .flat_map(|(wanted, listed, kind)| {
            wanted
                .iter()
                .map(move |id| match listed.iter().find(|i| &i.id == id) {
                    Some(info) => consider(info),
                    None => Err(Skip {
                        source: id.clone(),
                        reason: format!("no {kind} with this identifier"),
                    }),
                })
        })
        .collect(),
    };
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for d in decided {
        match d {
            Ok(s) => chosen.push(s),
            Err(s) => skipped.push(s),
        }
    }
    (chosen, skipped)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub arn: String,
    pub created: Option<DateTime<Utc>>,
    /// `automated`, `manual`, `shared`, `public`, `awsbackup`.
    pub snapshot_type: String,
    /// `available`, `creating`, ...
    pub status: String,
}

/// The newest automated snapshot that is available; manual, shared and unfinished ones are
/// not candidates.
pub fn newest_automated(snapshots: &[Snapshot]) -> Option<&Snapshot> {
    snapshots
        .iter()
        .filter(|s| {
            s.snapshot_type.eq_ignore_ascii_case("automated")
                && s.status.eq_ignore_ascii_case("available")
        })
        .filter(|s| s.created.is_some())
        .max_by_key(|s| s.created)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Starting,
    InProgress,
    Complete,
    Canceling,
    Canceled,
    Failed,
    Unknown,
}

impl TaskStatus {
    pub fn parse(s: &str) -> TaskStatus {
        match s.to_ascii_uppercase().as_str() {
            "STARTING" => TaskStatus::Starting,
            "IN_PROGRESS" => TaskStatus::InProgress,
            "COMPLETE" => TaskStatus::Complete,
            "CANCELING" => TaskStatus::Canceling,
            "CANCELED" | "CANCELLED" => TaskStatus::Canceled,
            "FAILED" => TaskStatus::Failed,
            _ => TaskStatus::Unknown,
        }
    }

    /// What counts against the account's five concurrent exports.
    pub fn is_running(self) -> bool {
        matches!(self, TaskStatus::Starting | TaskStatus::InProgress)
    }

    /// Exported, or on its way (a task in an unknown state is not second-guessed).
    pub fn is_exported_or_exporting(self) -> bool {
        !matches!(self, TaskStatus::Canceled | TaskStatus::Failed)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExportTask {
    pub id: String,
    pub source_arn: String,
    pub status: TaskStatus,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub failure_cause: Option<String>,
    pub started: Option<DateTime<Utc>>,
    pub ended: Option<DateTime<Utc>>,
    pub size_gb: Option<i32>,
}

impl ExportTask {
    /// Where RDS writes: `s3://<bucket>/<prefix>/<task id>/`.
    pub fn s3_uri(&self) -> Option<String> {
        let bucket = self.s3_bucket.as_deref()?;
        Some(export_location(
            bucket,
            self.s3_prefix.as_deref().unwrap_or_default(),
            &self.id,
        ))
    }
}

pub fn export_location(bucket: &str, prefix: &str, task_id: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("s3://{bucket}/{task_id}/")
    } else {
        format!("s3://{bucket}/{prefix}/{task_id}/")
    }
}

/// A valid, deterministic `ExportTaskIdentifier` for a snapshot: `bk-<snapshot>-<hash>`, with
/// `-a<n>` for a retry after a failed attempt. Letters, digits and single hyphens, starts with a
/// letter, at most 60 characters; the hash of the full ARN keeps it unique when a long
/// identifier is cut.
pub fn export_task_id(snapshot_id: &str, snapshot_arn: &str, attempt: u32) -> String {
    let hash = hex::encode(&Sha256::digest(snapshot_arn.as_bytes())[..4]);
    let suffix = if attempt > 1 {
        format!("-{hash}-a{attempt}")
    } else {
        format!("-{hash}")
    };
    let readable = snapshot_id.strip_prefix("rds:").unwrap_or(snapshot_id);
    let mut id = String::from("bk-");
    for c in readable.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '-' && id.ends_with('-') {
            continue;
        }
        id.push(c);
    }
    id.truncate(MAX_TASK_ID_LEN - suffix.len());
    while id.ends_with('-') {
        id.pop();
    }
    id + &suffix
}

/// The rule RDS applies to `ExportTaskIdentifier`.
pub fn is_valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TASK_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.contains("--")
        && !id.ends_with('-')
}

/// `<prefix>/<source-id>/<snapshot date>`; RDS adds `/<task id>/` below it.
pub fn export_prefix(prefix: &str, source_id: &str, created: DateTime<Utc>) -> String {
    let date = created.format("%Y-%m-%d");
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{source_id}/{date}")
    } else {
        format!("{prefix}/{source_id}/{date}")
    }
}

/// Everything `StartExportTask` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    pub source: String,
    pub kind: SnapshotKind,
    pub snapshot: String,
    #[serde(skip)]
    pub snapshot_arn: String,
    #[serde(skip)]
    pub snapshot_created: DateTime<Utc>,
    pub task_id: String,
    pub s3_uri: String,
    #[serde(skip)]
    pub bucket: String,
    #[serde(skip)]
    pub prefix: String,
    #[serde(skip)]
    pub role_arn: String,
    #[serde(skip)]
    pub kms_key_arn: String,
    #[serde(skip)]
    pub export_only: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlreadyExported {
    pub source: String,
    pub snapshot: String,
    pub task_id: String,
    pub status: TaskStatus,
}

/// Where exports go; from config.
#[derive(Debug, Clone)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
    pub role_arn: String,
    pub kms_key_arn: String,
    pub export_only: Vec<String>,
}

/// One source's facts: its newest automated snapshot (if any) and that snapshot's export tasks.
#[derive(Debug, Clone)]
pub struct SourceFacts {
    pub source: Source,
    pub snapshot: Option<Snapshot>,
    pub tasks: Vec<ExportTask>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub start: Vec<Export>,
    pub already_exported: Vec<AlreadyExported>,
    pub deferred: Vec<Export>,
    pub skipped: Vec<Skip>,
    pub running_before: usize,
    pub slots: usize,
}

/// Decides per source, then fills the free export slots oldest-snapshot-first.
/// `running` is the number of the account's exports in STARTING or IN_PROGRESS.
pub fn plan(
    facts: &[SourceFacts],
    dest: &Destination,
    running: usize,
    max_concurrent: usize,
    max_attempts: u32,
) -> Plan {
    decide(facts, dest, max_attempts).fill_slots(running, max_concurrent)
}

impl Plan {
    /// Keeps as many of `start` (oldest snapshot first) as the free slots allow; the rest are
    /// deferred to the next run.
    pub fn fill_slots(mut self, running: usize, max_concurrent: usize) -> Plan {
        self.running_before = running;
        self.slots = max_concurrent.saturating_sub(running);
        let take = self.slots.min(self.start.len());
        self.deferred = self.start.split_off(take);
        self
    }
}

/// Per source: skip, already exported, or a candidate export. Every candidate is in `start`,
/// oldest snapshot first, until [`Plan::fill_slots`] applies the quota.
pub fn decide(facts: &[SourceFacts], dest: &Destination, max_attempts: u32) -> Plan {
    let mut plan = Plan::default();
    let mut candidates = Vec::new();
    for f in facts {
        let Some(snap) = &f.snapshot else {
            plan.skipped.push(Skip {
                source: f.source.id.clone(),
                reason: "no available automated snapshot (automated backups off, or the first one is not done)".into(),
            });
            continue;
        };
        let tasks: Vec<&ExportTask> = f
            .tasks
            .iter()
            .filter(|t| t.source_arn == snap.arn)
            .collect();
        if let Some(t) = tasks.iter().find(|t| t.status.is_exported_or_exporting()) {
            plan.already_exported.push(AlreadyExported {
                source: f.source.id.clone(),
                snapshot: snap.id.clone(),
                task_id: t.id.clone(),
                status: t.status,
            });
            continue;
        }
        let attempt = tasks.len() as u32 + 1;
        if attempt > max_attempts {
            let cause = tasks
                .iter()
                .rev()
                .find_map(|t| t.failure_cause.clone())
                .unwrap_or_else(|| "no cause given".into());
            plan.skipped.push(Skip {
                source: f.source.id.clone(),
                reason: format!(
                    "export of {} failed {} times, not retried (last: {cause})",
                    snap.id,
                    tasks.len()
                ),
            });
            continue;
        }
        let created = snap.created.unwrap_or_default();
        let task_id = export_task_id(&snap.id, &snap.arn, attempt);
        let prefix = export_prefix(&dest.prefix, &f.source.id, created);
        candidates.push(Export {
            source: f.source.id.clone(),
            kind: f.source.kind,
            snapshot: snap.id.clone(),
            snapshot_arn: snap.arn.clone(),
            snapshot_created: created,
            s3_uri: export_location(&dest.bucket, &prefix, &task_id),
            task_id,
            bucket: dest.bucket.clone(),
            prefix,
            role_arn: dest.role_arn.clone(),
            kms_key_arn: dest.kms_key_arn.clone(),
            export_only: dest.export_only.clone(),
        });
    }
    candidates
        .sort_by(|a, b| (a.snapshot_created, &a.source).cmp(&(b.snapshot_created, &b.source)));
    plan.start = candidates;
    plan
}

/// The export task an RDS export event is about: among the snapshot's tasks, the newest whose
/// status matches the event's outcome, else the newest.
pub fn task_for_event<'a>(
    tasks: &'a [ExportTask],
    snapshot_arn: &str,
    outcome: ExportOutcome,
) -> Option<&'a ExportTask> {
    let wanted = match outcome {
        ExportOutcome::Completed => TaskStatus::Complete,
        ExportOutcome::Failed => TaskStatus::Failed,
        ExportOutcome::Cancelled => TaskStatus::Canceled,
    };
    let mine: Vec<&ExportTask> = tasks
        .iter()
        .filter(|t| t.source_arn == snapshot_arn)
        .collect();
    let newest =
        |ts: &mut dyn Iterator<Item = &&'a ExportTask>| ts.max_by_key(|t| t.started).copied();
    newest(&mut mine.iter().filter(|t| t.status == wanted)).or_else(|| newest(&mut mine.iter()))
}

/// `rds:shop-db-2026-11-21-02-10` → `shop-db`: the source of an automated snapshot.
pub fn source_of_snapshot(snapshot_id: &str) -> &str {
    let id = snapshot_id.strip_prefix("rds:").unwrap_or(snapshot_id);
    // Automated snapshot names end in -YYYY-MM-DD-HH-MM (16 characters and the hyphen).
    let stamp = id.len().checked_sub(17).filter(|&i| {
        id.as_bytes()[i] == b'-' && id[i + 1..].chars().all(|c| c.is_ascii_digit() || c == '-')
    });
    stamp.map_or(id, |i| &id[..i])
}

/// Facts grouped per snapshot ARN, for looking tasks up.
pub fn tasks_by_source(tasks: Vec<ExportTask>) -> HashMap<String, Vec<ExportTask>> {
    let mut by: HashMap<String, Vec<ExportTask>> = HashMap::new();
    for t in tasks {
        by.entry(t.source_arn.clone()).or_default().push(t);
    }
    by
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(day: u32, hour: u32) -> Option<DateTime<Utc>> {
        Some(Utc.with_ymd_and_hms(2026, 11, day, hour, 10, 0).unwrap())
    }

    fn info(id: &str, kind: SnapshotKind, engine: &str, tags: &[(&str, &str)]) -> SourceInfo {
        SourceInfo {
            id: id.into(),
            kind,
            engine: engine.into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cluster: None,
        }
    }

    fn snap(id: &str, created: Option<DateTime<Utc>>, kind: &str, status: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            arn: format!("arn:aws:rds:eu-west-1:123456789012:snapshot:{id}"),
            created,
            snapshot_type: kind.into(),
            status: status.into(),
        }
    }

    fn task(id: &str, source_arn: &str, status: TaskStatus) -> ExportTask {
        ExportTask {
            id: id.into(),
            source_arn: source_arn.into(),
            status,
            s3_bucket: Some("b".into()),
            s3_prefix: Some("p".into()),
            failure_cause: None,
            started: None,
            ended: None,
            size_gb: None,
        }
    }

    fn dest() -> Destination {
        Destination {
            bucket: "exports".into(),
            prefix: "rds-exports".into(),
            role_arn: "arn:aws:iam::123456789012:role/export".into(),
            kms_key_arn: "arn:aws:kms:eu-west-1:123456789012:key/k".into(),
            export_only: vec![],
        }
    }

    fn facts(id: &str, day: u32, tasks: Vec<ExportTask>) -> SourceFacts {
        SourceFacts {
            source: Source {
                id: id.into(),
                kind: SnapshotKind::Instance,
            },
            snapshot: Some(snap(
                &format!("rds:{id}-2026-11-{day:02}-02-10"),
                at(day, 2),
                "automated",
                "available",
            )),
            tasks,
        }
    }

    const TAG: [(&str, &str); 1] = [("bridgekeeper:export", "true")];

    #[test]
    fn tag_selection_takes_tagged_instances_and_clusters_only() {
        let instances = [
            info("shop-db", SnapshotKind::Instance, "postgres", &TAG),
            info("scratch-db", SnapshotKind::Instance, "mysql", &[]),
            SourceInfo {
                cluster: Some("orders".into()),
                ..info(
                    "orders-1",
                    SnapshotKind::Instance,
                    "aurora-postgresql",
                    &TAG,
                )
            },
        ];
        let clusters = [info(
            "orders",
            SnapshotKind::Cluster,
            "aurora-postgresql",
            &TAG,
        )];
        let selection = Selection::Tag {
            key: "bridgekeeper:export".into(),
            value: "true".into(),
        };
        let (chosen, skipped) = select_sources(&selection, &instances, &clusters);
        let ids: Vec<_> = chosen.iter().map(|s| (s.id.as_str(), s.kind)).collect();
        assert_eq!(
            ids,
            [
                ("shop-db", SnapshotKind::Instance),
                ("orders", SnapshotKind::Cluster)
            ]
        );
        assert!(skipped.is_empty(), "{skipped:?}");
    }

    #[test]
    fn listed_identifiers_report_unknown_member_and_unsupported_sources() {
        let instances = [
            info("shop-db", SnapshotKind::Instance, "postgres", &[]),
            info("legacy", SnapshotKind::Instance, "sqlserver-se", &[]),
            SourceInfo {
                cluster: Some("orders".into()),
                ..info("orders-1", SnapshotKind::Instance, "aurora-mysql", &[])
            },
        ];
        let selection = Selection::Ids {
            instances: vec![
                "shop-db".into(),
                "legacy".into(),
                "orders-1".into(),
                "ghost".into(),
            ],
            clusters: vec!["orders".into()],
        };
        let (chosen, skipped) = select_sources(&selection, &instances, &[]);
        assert_eq!(
            chosen,
            [Source {
                id: "shop-db".into(),
                kind: SnapshotKind::Instance
            }]
        );
        let reasons: Vec<_> = skipped
            .iter()
            .map(|s| (s.source.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    "legacy",
                    "engine sqlserver-se is not supported by RDS snapshot export"
                ),
                (
                    "orders-1",
                    "instance of cluster orders: exported with the cluster's snapshot"
                ),
                ("ghost", "no DB instance with this identifier"),
                ("orders", "no DB cluster with this identifier"),
            ]
        );
    }

    #[test]
    fn newest_automated_ignores_manual_and_unfinished_snapshots() {
        let snaps = [
            snap(
                "rds:db-2026-11-19-02-10",
                at(19, 2),
                "automated",
                "available",
            ),
            snap(
                "rds:db-2026-11-20-02-10",
                at(20, 2),
                "automated",
                "available",
            ),
            snap("before-upgrade", at(20, 9), "manual", "available"),
            snap(
                "rds:db-2026-11-21-02-10",
                at(21, 2),
                "automated",
                "creating",
            ),
        ];
        assert_eq!(
            newest_automated(&snaps).unwrap().id,
            "rds:db-2026-11-20-02-10"
        );
        assert_eq!(newest_automated(&snaps[2..]), None);
    }

    #[test]
    fn skips_snapshot_already_exported_or_exporting() {
        let f = facts("shop-db", 20, vec![]);
        let arn = f.snapshot.as_ref().unwrap().arn.clone();
        for status in [
            TaskStatus::Complete,
            TaskStatus::InProgress,
            TaskStatus::Starting,
            TaskStatus::Canceling,
        ] {
            let with_task = SourceFacts {
                tasks: vec![task("bk-x", &arn, status)],
                ..f.clone()
            };
            let p = plan(&[with_task], &dest(), 0, 5, 3);
            assert!(p.start.is_empty(), "{status:?}");
            assert_eq!(p.already_exported[0].task_id, "bk-x");
        }
        // A task for an older snapshot of the same source does not count.
        let older = SourceFacts {
            tasks: vec![task(
                "bk-old",
                "arn:aws:rds:eu-west-1:123456789012:snapshot:rds:old",
                TaskStatus::Complete,
            )],
            ..f
        };
        assert_eq!(plan(&[older], &dest(), 0, 5, 3).start.len(), 1);
    }

    #[test]
    fn failed_export_is_retried_with_a_new_id_until_the_attempt_limit() {
        let f = facts("shop-db", 20, vec![]);
        let arn = f.snapshot.as_ref().unwrap().arn.clone();
        let failed = |n: usize| SourceFacts {
            tasks: (0..n)
                .map(|i| ExportTask {
                    failure_cause: Some("KMS key is disabled".into()),
                    ..task(&format!("t{i}"), &arn, TaskStatus::Failed)
                })
                .collect(),
            ..f.clone()
        };
        let p = plan(&[failed(1)], &dest(), 0, 5, 3);
        assert!(
            p.start[0].task_id.ends_with("-a2"),
            "{}",
            p.start[0].task_id
        );
        let p = plan(&[failed(3)], &dest(), 0, 5, 3);
        assert!(p.start.is_empty());
        assert!(
            p.skipped[0].reason.contains("failed 3 times"),
            "{:?}",
            p.skipped
        );
        assert!(p.skipped[0].reason.contains("KMS key is disabled"));
    }

    #[test]
    fn source_without_snapshot_is_skipped_with_a_reason() {
        let f = SourceFacts {
            snapshot: None,
            ..facts("new-db", 20, vec![])
        };
        let p = plan(&[f], &dest(), 0, 5, 3);
        assert_eq!(p.skipped[0].source, "new-db");
        assert!(
            p.skipped[0]
                .reason
                .contains("no available automated snapshot")
        );
    }

    #[test]
    fn quota_fills_free_slots_oldest_snapshot_first_and_defers_the_rest() {
        let all: Vec<_> = [
            (7, 21),
            (1, 18),
            (2, 20),
            (3, 19),
            (4, 21),
            (5, 17),
            (6, 20),
        ]
        .iter()
        .map(|(n, day)| facts(&format!("db{n}"), *day, vec![]))
        .collect();
        let p = plan(&all, &dest(), 3, 5, 3);
        assert_eq!((p.running_before, p.slots), (3, 2));
        let started: Vec<_> = p.start.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(started, ["db5", "db1"]);
        let deferred: Vec<_> = p.deferred.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(deferred, ["db3", "db2", "db6", "db4", "db7"]);
    }

    #[test]
    fn a_lower_cap_and_a_full_account_start_nothing_more() {
        let all: Vec<_> = (1..=3)
            .map(|n| facts(&format!("db{n}"), 20, vec![]))
            .collect();
        assert_eq!(plan(&all, &dest(), 0, 2, 3).start.len(), 2);
        let full = plan(&all, &dest(), 5, 5, 3);
        assert_eq!((full.start.len(), full.deferred.len()), (0, 3));
        // More running than the cap (someone else's exports): no underflow, nothing started.
        assert_eq!(plan(&all, &dest(), 7, 5, 3).slots, 0);
    }

    #[test]
    fn export_carries_bucket_prefix_role_key_and_location() {
        let p = plan(&[facts("shop-db", 21, vec![])], &dest(), 0, 5, 3);
        let e = &p.start[0];
        assert_eq!(e.prefix, "rds-exports/shop-db/2026-11-21");
        assert_eq!(
            e.s3_uri,
            format!("s3://exports/rds-exports/shop-db/2026-11-21/{}/", e.task_id)
        );
        assert!(
            e.task_id.starts_with("bk-shop-db-2026-11-21-02-10-"),
            "{}",
            e.task_id
        );
        assert_eq!(e.role_arn, dest().role_arn);
        assert!(!e.prefix.contains(':'));
    }

    #[test]
    fn source_of_an_automated_snapshot_drops_the_timestamp() {
        assert_eq!(
            source_of_snapshot("rds:shop-db-2026-11-21-02-10"),
            "shop-db"
        );
        assert_eq!(
            source_of_snapshot("manual-before-upgrade"),
            "manual-before-upgrade"
        );
        assert_eq!(source_of_snapshot("rds:x"), "x");
    }

    #[test]
    fn event_is_matched_to_the_task_with_its_outcome() {
        let arn = "arn:aws:rds:eu-west-1:123456789012:snapshot:rds:db";
        let mut failed = task("first", arn, TaskStatus::Failed);
        failed.started = at(21, 3);
        let mut done = task("second", arn, TaskStatus::Complete);
        done.started = at(21, 4);
        let tasks = [
            failed,
            done,
            task("other", "arn:other", TaskStatus::Complete),
        ];
        assert_eq!(
            task_for_event(&tasks, arn, ExportOutcome::Failed)
                .unwrap()
                .id,
            "first"
        );
        assert_eq!(
            task_for_event(&tasks, arn, ExportOutcome::Completed)
                .unwrap()
                .id,
            "second"
        );
        assert_eq!(
            task_for_event(&tasks, arn, ExportOutcome::Cancelled)
                .unwrap()
                .id,
            "second"
        );
        assert!(task_for_event(&tasks, "arn:none", ExportOutcome::Completed).is_none());
    }

    proptest! {
        #[test]
        fn task_id_is_always_valid_and_deterministic(id in "\\PC{0,120}", arn in "\\PC{0,200}", attempt in 1u32..20) {
            let a = export_task_id(&id, &arn, attempt);
            prop_assert!(is_valid_task_id(&a), "{a:?} from {id:?}");
            prop_assert_eq!(&a, &export_task_id(&id, &arn, attempt));
        }

        #[test]
        fn task_id_stays_unique_when_long_identifiers_are_cut(common in "[a-z][a-z0-9-]{60,80}", a in "[a-z0-9]{1,8}", b in "[a-z0-9]{1,8}") {
            prop_assume!(a != b);
            let (sa, sb) = (format!("rds:{common}{a}"), format!("rds:{common}{b}"));
            let arn = |s: &str| format!("arn:aws:rds:eu-west-1:123456789012:snapshot:{s}");
            prop_assert_ne!(export_task_id(&sa, &arn(&sa), 1), export_task_id(&sb, &arn(&sb), 1));
        }

        #[test]
        fn retries_get_ids_distinct_from_the_first_attempt(id in "[a-zA-Z:_.-]{0,90}", n in 2u32..10) {
            let arn = format!("arn:aws:rds:::snapshot:{id}");
            prop_assert_ne!(export_task_id(&id, &arn, 1), export_task_id(&id, &arn, n));
        }
    }
}
