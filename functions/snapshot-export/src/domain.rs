//! Pure decisions: which sources, which snapshot, which export task id, what to start now and
//! what to defer. No I/O here; `aws.rs` gathers the facts and carries out the plan.

use std::collections::{BTreeMap, HashMap};

use bridgekeeper::events::{ExportOutcome, SnapshotKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::snapshots::{Snapshot, source_of_task};

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
    /// For a cluster: `provisioned`, `serverless` (v1), ...
    pub engine_mode: Option<String>,
    /// Its ARN (an Aurora cluster's live data is exported from it).
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub id: String,
    pub kind: SnapshotKind,
    #[serde(skip)]
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub source: String,
    pub reason: String,
    /// Only a person can fix it (no snapshot, attempts used up, a cancelled export, a tag on
    /// the wrong resource): reported even when `SUMMARY_NOTIFICATIONS=changes`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_person: bool,
    /// RDS cannot export this source (its engine, its Region): said once, when first seen.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

impl Skip {
    fn new(source: &str, reason: String) -> Skip {
        Skip {
            source: source.to_owned(),
            reason,
            needs_person: false,
            unsupported: false,
        }
    }

    fn for_a_person(source: &str, reason: String) -> Skip {
        Skip {
            needs_person: true,
            ..Skip::new(source, reason)
        }
    }
}

/// Why RDS cannot export this source's snapshots, if it cannot ("Exporting DB snapshot data to
/// Amazon S3": RDS for MySQL, MariaDB and PostgreSQL, Multi-AZ DB clusters of them; Aurora MySQL
/// and PostgreSQL, provisioned; never Db2 or RDS Custom, StartExportTask).
fn not_exportable(info: &SourceInfo) -> Option<String> {
    let e = info.engine.as_str();
    let why = match info.kind {
        SnapshotKind::Instance if matches!(e, "mysql" | "mariadb" | "postgres") => return None,
        SnapshotKind::Cluster if e.starts_with("aurora") => {
            if info.engine_mode.as_deref() == Some("serverless") {
                "an Aurora Serverless v1 cluster: RDS exports provisioned Aurora only".to_owned()
            } else {
                return None;
            }
        }
        // A Multi-AZ DB cluster's snapshots export like an instance's; only the live export of
        // its data is refused ("You can't export cluster data from Multi-AZ DB clusters",
        // StartExportTask).
        SnapshotKind::Cluster if matches!(e, "mysql" | "postgres") => return None,
        _ if e.starts_with("custom-") => {
            format!("an RDS Custom instance ({e}): RDS does not export its snapshots to S3")
        }
        _ => format!("engine {e} is not supported by RDS snapshot export"),
    };
    Some(why)
}

/// Regions where RDS does not offer export to S3 (the supported Regions tables of the RDS and
/// Aurora guides).
pub const NO_EXPORT_REGIONS: &[&str] = &[
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-east-2",
    "ap-southeast-7",
    "mx-central-1",
    "us-gov-east-1",
    "us-gov-west-1",
];

/// The sources to export, and what was left out and why. Instances that belong to a cluster are
/// covered by the cluster's snapshot; a listed identifier that does not exist is reported.
pub fn select_sources(
    selection: &Selection,
    instances: &[SourceInfo],
    clusters: &[SourceInfo],
) -> (Vec<Source>, Vec<Skip>) {
    let consider = |info: &SourceInfo| -> Result<Source, Skip> {
        let skip = |reason: String| Skip::new(&info.id, reason);
        if let Some(cluster) = &info.cluster {
            Err(skip(format!(
                "instance of cluster {cluster}: exported with the cluster's snapshot"
            )))
        } else if let Some(why) = not_exportable(info) {
            Err(Skip {
                unsupported: true,
                ..skip(why)
            })
        } else {
            Ok(Source {
                id: info.id.clone(),
                kind: info.kind,
                arn: info.arn.clone(),
            })
        }
    };
    let decided: Vec<Result<Source, Skip>> = match selection {
        Selection::Tag { key, value } => {
            let tagged = |i: &&SourceInfo| i.tags.get(key) == Some(value);
            let cluster_tagged = |c: &str| clusters.iter().filter(tagged).any(|x| x.id == c);
            // A tagged Aurora member instance is covered by its cluster's snapshot: no line when
            // the cluster is selected, and a pointer to the cluster when it is not.
            let members = instances
                .iter()
                .filter(tagged)
                .filter_map(|i| Some((i, i.cluster.as_deref()?)))
                .filter(|(_, c)| !cluster_tagged(c))
                .map(|(i, c)| {
                    Err(Skip::for_a_person(
                        &i.id,
                        format!(
                            "member of Aurora cluster {c}, whose snapshots hold its data: tag the \
                             cluster {c} ({key}={value}), not the instance"
                        ),
                    ))
                });
            let instances = instances
                .iter()
                .filter(tagged)
                .filter(|i| i.cluster.is_none());
            instances
                .chain(clusters.iter().filter(tagged))
                .map(consider)
                .chain(members)
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
                    None => Err(Skip::for_a_person(
                        id,
                        format!("no {kind} with this identifier"),
                    )),
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
    /// RDS's `WarningMessage`: a task can complete having skipped tables.
    pub warning: Option<String>,
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
    pub export_only: crate::export_only::ExportOnly,
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

/// Decides per source, then fills the free export slots, longest-unexported source first.
/// `running` is the number of the account's exports in STARTING or IN_PROGRESS.
pub fn plan(
    facts: &[SourceFacts],
    last: &LastExports,
    dest: &Destination,
    running: usize,
    max_concurrent: usize,
    max_attempts: u32,
) -> Plan {
    decide(facts, last, dest, max_attempts).fill_slots(running, max_concurrent)
}

/// When each source's newest successful export (one Bridgekeeper started) ended.
pub type LastExports = HashMap<String, DateTime<Utc>>;

/// Bridgekeeper's export task ids (`export_task_id`); others were started by someone else.
pub const TASK_PREFIX: &str = "bk-";

/// The newest completed export of each source, from the account's export tasks: what the
/// fairness rule ranks by, and what the export-age objective measures.
pub fn last_exports(tasks: &[ExportTask]) -> LastExports {
    let mut last = LastExports::new();
    for t in tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Complete && t.id.starts_with(TASK_PREFIX))
    {
        let Some(at) = t.ended.or(t.started) else {
            continue;
        };
        let source = source_of_task(t.s3_prefix.as_deref(), &t.source_arn).to_owned();
        let e = last.entry(source).or_insert(at);
        *e = (*e).max(at);
    }
    last
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

/// Per source: skip, already exported, or a candidate export. Every candidate is in `start` until
/// [`Plan::fill_slots`] applies the quota, ranked so that no source waits forever: never
/// exported first, then the longest since its last successful export, then the oldest snapshot.
/// (Ranking by snapshot time alone defers the same late-backup sources every night.)
pub fn decide(
    facts: &[SourceFacts],
    last: &LastExports,
    dest: &Destination,
    max_attempts: u32,
) -> Plan {
    let mut plan = Plan::default();
    let mut candidates = Vec::new();
    for f in facts {
        let Some(snap) = &f.snapshot else {
            plan.skipped.push(Skip::for_a_person(
                &f.source.id,
                "no available automated snapshot (automated backups off, or the first one is not done)".into(),
            ));
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
        // A person cancelled it: not started again behind their back.
        if let Some(t) = tasks.iter().find(|t| t.status == TaskStatus::Canceled) {
            plan.skipped.push(Skip::for_a_person(
                &f.source.id,
                format!(
                    "export {} of {} was cancelled; not restarted (start it by hand, or the next \
                     snapshot is exported)",
                    t.id, snap.id
                ),
            ));
            continue;
        }
        let attempt = tasks.len() as u32 + 1;
        if attempt > max_attempts {
            let cause = tasks
                .iter()
                .rev()
                .find_map(|t| t.failure_cause.clone())
                .unwrap_or_else(|| "no cause given".into());
            plan.skipped.push(Skip::for_a_person(
                &f.source.id,
                format!(
                    "export of {} failed {} times, not retried (last: {cause})",
                    snap.id,
                    tasks.len()
                ),
            ));
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
            export_only: dest.export_only.for_source(&f.source.id),
        });
    }
    // `None` sorts before any time: never exported goes first.
    candidates.sort_by(|a, b| {
        (last.get(&a.source), a.snapshot_created, &a.source).cmp(&(
            last.get(&b.source),
            b.snapshot_created,
            &b.source,
        ))
    });
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

/// Facts grouped per snapshot ARN, for looking tasks up.
pub fn tasks_by_source(tasks: Vec<ExportTask>) -> HashMap<String, Vec<ExportTask>> {
    let mut by: HashMap<String, Vec<ExportTask>> = HashMap::new();
    for t in tasks {
        by.entry(t.source_arn.clone()).or_default().push(t);
    }
    by
}

/// The export-age objective: selected sources whose newest successful export is older than
/// `max_age`, or that were never exported and are not waiting for a slot, unless their newest
/// snapshot is exported, exporting or just started. Source → what to tell a person.
pub fn overdue(
    facts: &[SourceFacts],
    last: &LastExports,
    exporting: &[&str],
    waiting: &[&str],
    now: DateTime<Utc>,
    max_age: chrono::Duration,
) -> BTreeMap<String, String> {
    facts
        .iter()
        .filter(|f| !exporting.contains(&f.source.id.as_str()))
        .filter_map(|f| {
            let id = f.source.id.as_str();
            let why = match last.get(id) {
                // A new source queued behind others is not late yet; one that cannot be
                // exported at all (no snapshot, attempts used up) is.
                None if waiting.contains(&id) => return None,
                None => "never exported".to_owned(),
                Some(at) if now - *at > max_age => format!(
                    "last exported {} ({} h ago)",
                    at.format("%Y-%m-%d %H:%M UTC"),
                    (now - *at).num_hours()
                ),
                Some(_) => return None,
            };
            Some((f.source.id.clone(), why))
        })
        .collect()
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
            engine_mode: None,
            arn: format!("arn:aws:rds:eu-west-1:123456789012:db:{id}"),
        }
    }

    #[test]
    fn sources_rds_cannot_export_say_why_by_name() {
        let tag = [("bridgekeeper:export", "true")];
        let mut serverless = info("old-aurora", SnapshotKind::Cluster, "aurora-mysql", &tag);
        serverless.engine_mode = Some("serverless".into());
        let instances = [
            info("ledger", SnapshotKind::Instance, "db2-se", &tag),
            info("erp", SnapshotKind::Instance, "custom-oracle-ee", &tag),
            info("crm", SnapshotKind::Instance, "sqlserver-se", &tag),
            info("shop", SnapshotKind::Instance, "postgres", &tag),
        ];
        let clusters = [
            info("maz", SnapshotKind::Cluster, "postgres", &tag),
            info("odd", SnapshotKind::Cluster, "neptune", &tag),
            serverless,
            info("orders", SnapshotKind::Cluster, "aurora-postgresql", &tag),
        ];
        let selection = Selection::Tag {
            key: "bridgekeeper:export".into(),
            value: "true".into(),
        };
        let (chosen, skipped) = select_sources(&selection, &instances, &clusters);
        let ids: Vec<_> = chosen.iter().map(|s| s.id.as_str()).collect();
        // A Multi-AZ DB cluster's snapshots export; only its live data does not.
        assert_eq!(ids, ["shop", "maz", "orders"]);
        let why = |id: &str| {
            skipped
                .iter()
                .find(|s| s.source == id)
                .map(|s| s.reason.clone())
                .unwrap_or_default()
        };
        assert!(why("ledger").contains("engine db2-se"));
        assert!(why("erp").contains("RDS Custom"));
        assert!(why("odd").contains("engine neptune"));
        assert!(why("old-aurora").contains("Serverless v1"));
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
            warning: None,
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
            export_only: Default::default(),
        }
    }

    fn facts(id: &str, day: u32, tasks: Vec<ExportTask>) -> SourceFacts {
        SourceFacts {
            source: Source {
                id: id.into(),
                kind: SnapshotKind::Instance,
                arn: String::new(),
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
                kind: SnapshotKind::Instance,
                arn: "arn:aws:rds:eu-west-1:123456789012:db:shop-db".into(),
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
            let p = plan(&[with_task], &LastExports::new(), &dest(), 0, 5, 3);
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
        assert_eq!(
            plan(&[older], &LastExports::new(), &dest(), 0, 5, 3)
                .start
                .len(),
            1
        );
    }

    #[test]
    fn failed_export_is_retried_with_a_new_id_until_the_attempt_limit() {
        let f = facts("shop-db", 20, vec![]);
        let arn = f.snapshot.as_ref().unwrap().arn.clone();
        let failed = |n: usize| SourceFacts {
            tasks: (0..n)
                .map(|i| ExportTask {
                    failure_cause: Some("KMS key is disabled".into()),
                    warning: None,
                    ..task(&format!("t{i}"), &arn, TaskStatus::Failed)
                })
                .collect(),
            ..f.clone()
        };
        let p = plan(&[failed(1)], &LastExports::new(), &dest(), 0, 5, 3);
        assert!(
            p.start[0].task_id.ends_with("-a2"),
            "{}",
            p.start[0].task_id
        );
        let p = plan(&[failed(3)], &LastExports::new(), &dest(), 0, 5, 3);
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
        let p = plan(&[f], &LastExports::new(), &dest(), 0, 5, 3);
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
        let p = plan(&all, &LastExports::new(), &dest(), 3, 5, 3);
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
        assert_eq!(
            plan(&all, &LastExports::new(), &dest(), 0, 2, 3)
                .start
                .len(),
            2
        );
        let full = plan(&all, &LastExports::new(), &dest(), 5, 5, 3);
        assert_eq!((full.start.len(), full.deferred.len()), (0, 3));
        // More running than the cap (someone else's exports): no underflow, nothing started.
        assert_eq!(plan(&all, &LastExports::new(), &dest(), 7, 5, 3).slots, 0);
    }

    #[test]
    fn export_carries_bucket_prefix_role_key_and_location() {
        let p = plan(
            &[facts("shop-db", 21, vec![])],
            &LastExports::new(),
            &dest(),
            0,
            5,
            3,
        );
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

    /// The starting bug: with more sources than slots, ranking by snapshot time deferred the
    /// same late-backup sources every night, forever.
    #[test]
    fn eight_sources_and_five_slots_are_all_exported_within_two_nights() {
        let ids: Vec<String> = (0..8).map(|i| format!("db{i}")).collect();
        let mut tasks: Vec<ExportTask> = Vec::new();
        let mut exported_on: HashMap<String, u32> = HashMap::new();
        for night in [21u32, 22, 23] {
            // Each night's snapshot; db7 backs up latest, db0 earliest.
            let facts: Vec<SourceFacts> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let mut f = facts(id, night, vec![]);
                    let s = f.snapshot.as_mut().unwrap();
                    s.created = Some(
                        Utc.with_ymd_and_hms(2026, 11, night, 1, i as u32, 0)
                            .unwrap(),
                    );
                    f.tasks = tasks
                        .iter()
                        .filter(|t| t.source_arn == s.arn)
                        .cloned()
                        .collect();
                    f
                })
                .collect();
            let p = plan(&facts, &last_exports(&tasks), &dest(), 0, 5, 3);
            assert_eq!(p.start.len(), 5, "night {night}");
            // Every started export completes before the next night.
            for e in p.start {
                exported_on.entry(e.source.clone()).or_insert(night);
                let mut t = task(&e.task_id, &e.snapshot_arn, TaskStatus::Complete);
                t.ended = Some(Utc.with_ymd_and_hms(2026, 11, night, 5, 0, 0).unwrap());
                tasks.push(t);
            }
        }
        for id in &ids {
            assert!(
                exported_on.get(id).is_some_and(|&n| n <= 22),
                "{id}: {exported_on:?}"
            );
        }
    }

    #[test]
    fn the_longest_unexported_source_goes_first_and_never_exported_before_all() {
        let done = |day: u32| Utc.with_ymd_and_hms(2026, 11, day, 6, 0, 0).unwrap();
        let last = LastExports::from([("a".to_owned(), done(20)), ("b".to_owned(), done(18))]);
        // Snapshot times would put "a" first; the last exports decide instead.
        let f = [
            facts("a", 21, vec![]),
            facts("b", 22, vec![]),
            facts("c", 23, vec![]),
        ];
        let p = plan(&f, &last, &dest(), 3, 5, 3);
        let order: Vec<&str> = p.start.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(order, ["c", "b"]);
        assert_eq!(p.deferred[0].source, "a");
    }

    #[test]
    fn only_bridgekeepers_completed_exports_count_as_a_last_export() {
        let arn = |id: &str| {
            format!("arn:aws:rds:eu-west-1:123456789012:snapshot:rds:{id}-2026-11-20-02-10")
        };
        let ended = |t: ExportTask, h: u32| ExportTask {
            ended: Some(Utc.with_ymd_and_hms(2026, 11, 20, h, 0, 0).unwrap()),
            ..t
        };
        let tasks = [
            ended(
                task(
                    "bk-shop-db-2026-11-20-02-10-aa",
                    &arn("shop-db"),
                    TaskStatus::Complete,
                ),
                4,
            ),
            ended(
                task("someone-elses", &arn("billing"), TaskStatus::Complete),
                4,
            ),
            ended(
                task(
                    "bk-billing-2026-11-20-02-10-bb",
                    &arn("billing"),
                    TaskStatus::Failed,
                ),
                5,
            ),
            ended(
                task(
                    "bk-catalog-x",
                    "arn:aws:rds:eu-west-1:123456789012:cluster-snapshot:rds:catalog-2026-11-20-03-00",
                    TaskStatus::Complete,
                ),
                6,
            ),
        ];
        let last = last_exports(&tasks);
        assert_eq!(last.len(), 2, "{last:?}");
        assert!(last.contains_key("shop-db") && last.contains_key("catalog"));
    }

    #[test]
    fn a_cancelled_export_is_not_restarted_and_a_failed_one_is() {
        let f = facts("shop-db", 21, vec![]);
        let arn = f.snapshot.as_ref().unwrap().arn.clone();
        let cancelled = facts(
            "shop-db",
            21,
            vec![task("bk-x", &arn, TaskStatus::Canceled)],
        );
        let p = plan(&[cancelled], &LastExports::new(), &dest(), 0, 5, 3);
        assert!(p.start.is_empty());
        assert!(p.skipped[0].reason.contains("was cancelled; not restarted"));
        assert!(p.skipped[0].needs_person);
        let failed = facts("shop-db", 21, vec![task("bk-x", &arn, TaskStatus::Failed)]);
        let p = plan(&[failed], &LastExports::new(), &dest(), 0, 5, 3);
        assert_eq!(p.start.len(), 1);
        assert!(p.start[0].task_id.ends_with("-a2"));
    }

    #[test]
    fn a_tagged_aurora_member_whose_cluster_is_not_selected_says_to_tag_the_cluster() {
        let mut member = info(
            "catalog-1",
            SnapshotKind::Instance,
            "aurora-postgresql",
            &TAG,
        );
        member.cluster = Some("catalog".into());
        let mut covered = info(
            "orders-1",
            SnapshotKind::Instance,
            "aurora-postgresql",
            &TAG,
        );
        covered.cluster = Some("orders".into());
        let clusters = [
            info("catalog", SnapshotKind::Cluster, "aurora-postgresql", &[]),
            info("orders", SnapshotKind::Cluster, "aurora-postgresql", &TAG),
        ];
        let selection = Selection::Tag {
            key: "bridgekeeper:export".into(),
            value: "true".into(),
        };
        let (chosen, skipped) = select_sources(&selection, &[member, covered], &clusters);
        assert_eq!(
            chosen.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["orders"]
        );
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].source, "catalog-1");
        assert!(
            skipped[0].reason.contains("tag the cluster catalog"),
            "{}",
            skipped[0].reason
        );
        assert!(skipped[0].needs_person);
    }

    #[test]
    fn the_export_age_objective_names_overdue_sources_but_not_those_exporting_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let last = LastExports::from([
            ("fresh".to_owned(), now - chrono::Duration::hours(20)),
            ("stale".to_owned(), now - chrono::Duration::hours(50)),
        ]);
        let f = [
            facts("fresh", 22, vec![]),
            facts("stale", 22, vec![]),
            facts("new", 22, vec![]),
            facts("running", 22, vec![]),
            facts("queued", 22, vec![]),
        ];
        let o = overdue(
            &f,
            &last,
            &["running"],
            &["queued"],
            now,
            chrono::Duration::hours(36),
        );
        assert_eq!(o.keys().collect::<Vec<_>>(), ["new", "stale"]);
        assert_eq!(o["new"], "never exported");
        assert!(o["stale"].contains("(50 h ago)"), "{}", o["stale"]);
    }
}
