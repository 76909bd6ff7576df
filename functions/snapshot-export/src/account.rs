//! One account's run: its event in, plan, act, report (the entry, `handler::handle`, runs it
//! for the hub and each member account). The only place that knows the event shapes.

use bridgekeeper::events::{
    Envelope, RDS_CLUSTER_SNAPSHOT_EVENT, RDS_SNAPSHOT_EVENT, RdsEvent, ScheduledEvent,
};
use bridgekeeper::idempotency::Remember;
use bridgekeeper::metrics::{Metrics, Unit};
use bridgekeeper::notify::Notifier;
use bridgekeeper::{Class, Error};
use std::collections::BTreeSet;

use serde::Serialize;
use tracing::{info, warn};

use crate::aws::{Rds, Started};
use crate::completion::Exports;
use crate::config::{Config, SummaryPolicy};
use crate::domain::{self, AlreadyExported, Destination, SourceFacts, TaskStatus};
use crate::files::ExportFiles;
use crate::glue::Catalog;
use crate::report::{ExportReport, RunSummary, SourceError};

/// The Lambda's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Response {
    Schedule(RunSummary),
    /// An export finished: reported, then the free slot filled for the sources still waiting.
    ExportEvent {
        #[serde(flatten)]
        report: ExportReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<RunSummary>,
    },
    /// An automated snapshot was created: exported now if its source is selected.
    SnapshotCreated {
        snapshot: String,
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        run: Option<RunSummary>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ignored: Option<String>,
    },
    /// An export task someone else started: not reported as Bridgekeeper's.
    NotOurs {
        task_id: String,
        snapshot: String,
    },
}

/// RDS's "snapshot created" events, for a DB instance and for an Aurora cluster: automated
/// (0091, 0169) and manual (0042, 0075), which AWS Backup's snapshots are created as.
const SNAPSHOT_CREATED: [&str; 4] = [
    "RDS-EVENT-0091",
    "RDS-EVENT-0169",
    "RDS-EVENT-0042",
    "RDS-EVENT-0075",
];

/// What started a slot-filling run; a chained run speaks only when it starts or fails something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Schedule,
    Chained,
}

pub async fn handle<R: Rds, N: Notifier, M: Remember, F: ExportFiles, C: Catalog>(
    event: serde_json::Value,
    config: &Config,
    rds: &R,
    notifier: &N,
    memory: &M,
    exports: Exports<'_, F, C>,
) -> Result<Response, Error> {
    let ports = Ports {
        rds,
        notifier,
        memory,
        exports,
    };
    route(event, config, &ports).await
}

/// What the runs act through.
struct Ports<'a, R, N, M, F, C> {
    rds: &'a R,
    notifier: &'a N,
    memory: &'a M,
    exports: Exports<'a, F, C>,
}

async fn route<R: Rds, N: Notifier, M: Remember, F: ExportFiles, C: Catalog>(
    event: serde_json::Value,
    config: &Config,
    p: &Ports<'_, R, N, M, F, C>,
) -> Result<Response, Error> {
    let envelope = Envelope::of(&event)?;
    let kind = envelope.kind();
    let malformed =
        |e: serde_json::Error| Error::invalid_event(format!("malformed {} event: {e}", kind.1));
    match kind {
        k if bridgekeeper::events::scheduled(k) => {
            let _: ScheduledEvent = serde_json::from_value(event).map_err(malformed)?;
            scheduled(config, p, Trigger::Schedule, None)
                .await
                .map(Response::Schedule)
        }
        k if k == RDS_SNAPSHOT_EVENT || k == RDS_CLUSTER_SNAPSHOT_EVENT => {
            let e: RdsEvent = serde_json::from_value(event).map_err(malformed)?;
            if SNAPSHOT_CREATED.contains(&e.detail.event_id.as_str()) {
                return snapshot_created(e, config, p).await;
            }
            export_event(e, config, p).await
        }
        ("", "") => Err(Error::invalid_event(
            "no source or detail-type: expected a Scheduled Event or an RDS snapshot export event",
        )),
        _ => Err(envelope.not_handled(
            "a Scheduled Event or an RDS snapshot export event (RDS-EVENT-0159..0164)",
        )),
    }
}

const UNSUPPORTED_KEY: &str = "unsupported#reported";

/// A source RDS cannot export is a person's news once, when first seen (the store keeps which
/// were said); after that it stays in the JSON answer and in summaries sent for other news.
async fn announce_unsupported<M: Remember>(skipped: &mut [domain::Skip], memory: &M) {
    let said: BTreeSet<String> = match memory.recall(UNSUPPORTED_KEY).await {
        Ok(v) => v.unwrap_or_default().lines().map(str::to_owned).collect(),
        Err(e) => {
            bridgekeeper::idempotency::skipped(UNSUPPORTED_KEY, &e);
            BTreeSet::new()
        }
    };
    let now: BTreeSet<String> = skipped
        .iter()
        .filter(|s| s.unsupported)
        .map(|s| s.source.clone())
        .collect();
    for s in skipped.iter_mut().filter(|s| s.unsupported) {
        s.needs_person |= !said.contains(&s.source);
    }
    if now != said {
        let value = now.into_iter().collect::<Vec<_>>().join("\n");
        if let Err(e) = memory.remember(UNSUPPORTED_KEY, &value).await {
            warn!(error = %e, "sources RDS cannot export not remembered; the next run says them again");
        }
    }
}

/// DB instances and clusters, as listed for the selection.
type Listed = (Vec<domain::SourceInfo>, Vec<domain::SourceInfo>);

/// Lists only what the selection can use: listed instance ids need no cluster listing.
async fn list_sources<R: Rds>(config: &Config, rds: &R) -> Result<Listed, Error> {
    let (want_instances, want_clusters) = match &config.selection {
        domain::Selection::Ids {
            instances,
            clusters,
        } => (!instances.is_empty(), !clusters.is_empty()),
        domain::Selection::Tag { .. } => (true, true),
    };
    let instances = if want_instances {
        rds.list_instances().await?
    } else {
        vec![]
    };
    let clusters = if want_clusters {
        rds.list_clusters().await?
    } else {
        vec![]
    };
    Ok((instances, clusters))
}

/// Retryable failures end the invocation (EventBridge/Lambda retry it, the DLQ keeps it);
/// anything else is this source's problem, reported without stopping the others.
fn per_source(
    source: &str,
    err: bridgekeeper::AwsError,
    errors: &mut Vec<SourceError>,
) -> Result<(), Error> {
    if err.class() == Class::Retryable {
        return Err(err.into());
    }
    warn!(source, error = %err, "source failed");
    errors.push(SourceError {
        source: source.to_owned(),
        error: err.to_string(),
    });
    Ok(())
}

/// Starts the planned exports. A passing failure (throttling, a 5xx) after some started stops
/// the starting: what started is reported first, then the run fails retryably (the retry finds
/// those tasks by their ids); the sources left for the retry are only late, not overdue.
async fn start<R: Rds>(
    config: &Config,
    rds: &R,
    exports: Vec<domain::Export>,
    summary: &mut RunSummary,
) -> Result<(Option<Error>, Vec<String>), Error> {
    let mut retry: Option<Error> = None;
    let mut retrying: Vec<String> = Vec::new();
    for export in exports {
        if retry.is_some() {
            retrying.push(export.source);
            continue;
        }
        if config.dry_run {
            info!(task = %export.task_id, snapshot = %export.snapshot, "dry run: would start export");
            summary.started.push(export);
            continue;
        }
        match rds.start_export(&export).await {
            Ok(Started::Started { .. }) => summary.started.push(export),
            Ok(Started::AlreadyExists) => summary.already_exported.push(AlreadyExported {
                source: export.source,
                snapshot: export.snapshot,
                task_id: export.task_id,
                status: TaskStatus::Unknown,
            }),
            Err(e) if e.class() == Class::Retryable && !summary.started.is_empty() => {
                warn!(source = %export.source, error = %e, "export not started; the run will be retried after its report");
                summary.errors.push(SourceError {
                    source: export.source.clone(),
                    error: e.to_string(),
                });
                retrying.push(export.source);
                retry = Some(e.into());
            }
            Err(e) => per_source(&export.source, e, &mut summary.errors)?,
        }
    }
    Ok((retry, retrying))
}

/// What the run decides from, in one listing of the account's export tasks (not one per
/// source): each selected source's newest automated snapshot and its tasks, each source's last
/// successful export, and how many exports hold a slot now (theirs and ours).
async fn gather<R: Rds>(
    rds: &R,
    sources: Vec<domain::Source>,
    (manual, live): (bool, &[String]),
    errors: &mut Vec<SourceError>,
) -> Result<(Vec<SourceFacts>, domain::LastExports, usize), Error> {
    let mut facts = Vec::with_capacity(sources.len());
    let all_tasks: Vec<domain::ExportTask> = if sources.is_empty() {
        vec![]
    } else {
        rds.all_exports().await?
    };
    let last = domain::last_exports(&all_tasks);
    let running = all_tasks.iter().filter(|t| t.status.is_running()).count();
    let mut by_snapshot = domain::tasks_by_source(all_tasks);
    for source in sources {
        if live.contains(&source.id) && source.kind == bridgekeeper::events::SnapshotKind::Cluster {
            let snapshot = crate::snapshots::live(&source.id, &source.arn, chrono::Utc::now());
            // Every night's export of the cluster has its ARN as source: only tonight's count.
            let tonight = domain::export_task_id(&snapshot.id, &snapshot.arn, 1);
            let tasks = by_snapshot
                .remove(&snapshot.arn)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.id == tonight || t.id.starts_with(&format!("{tonight}-a")))
                .collect();
            facts.push(SourceFacts {
                source,
                snapshot: Some(snapshot),
                tasks,
            });
            continue;
        }
        let snapshot = match rds.snapshots(&source, manual).await {
            Ok(snaps) => crate::snapshots::newest_exportable(&snaps, manual).cloned(),
            Err(e) => {
                per_source(&source.id, e, errors)?;
                continue;
            }
        };
        let tasks = snapshot
            .as_ref()
            .and_then(|s| by_snapshot.remove(&s.arn))
            .unwrap_or_default();
        facts.push(SourceFacts {
            source,
            snapshot,
            tasks,
        });
    }
    Ok((facts, last, running))
}

async fn scheduled<R: Rds, N: Notifier, M: Remember, F: ExportFiles, C: Catalog>(
    config: &Config,
    p: &Ports<'_, R, N, M, F, C>,
    trigger: Trigger,
    listed: Option<Listed>,
) -> Result<RunSummary, Error> {
    let (rds, notifier) = (p.rds, p.notifier);
    let (instances, clusters) = match listed {
        Some(l) => l,
        None => list_sources(config, rds).await?,
    };
    let (mut sources, mut skipped) =
        domain::select_sources(&config.selection, &instances, &clusters);
    if domain::NO_EXPORT_REGIONS.contains(&config.region()) {
        let why = format!(
            "RDS does not offer snapshot export to S3 in {}",
            config.region()
        );
        skipped.extend(sources.drain(..).map(|s| domain::Skip {
            source: s.id,
            reason: why.clone(),
            needs_person: false,
            unsupported: true,
        }));
    }
    announce_unsupported(&mut skipped, p.memory).await;

    let mut errors = Vec::new();
    let kinds = (config.manual_snapshots, config.live_clusters.as_slice());
    let (facts, last, running) = gather(rds, sources, kinds, &mut errors).await?;

    let dest = Destination {
        bucket: config.bucket.clone(),
        prefix: config.prefix.clone(),
        role_arn: config.role_arn.to_string(),
        kms_key_arn: config.kms_key_arn.to_string(),
        export_only: config.export_only.clone(),
    };
    let decided = domain::decide(&facts, &last, &dest, config.max_attempts);
    let plan = decided.fill_slots(running, config.max_concurrent);

    let mut summary = RunSummary {
        dry_run: config.dry_run,
        already_exported: plan.already_exported,
        deferred: plan.deferred,
        skipped: [skipped, plan.skipped].concat(),
        running_before: plan.running_before,
        errors,
        ..RunSummary::default()
    };
    let (retry, retrying) = start(config, rds, plan.start, &mut summary).await?;

    if !config.dry_run {
        check_age(config, p, &facts, &last, &retrying, &mut summary).await?;
    }
    count(&summary, config.dry_run);

    let notify = match (trigger, config.summary) {
        (_, SummaryPolicy::Never) => false,
        (Trigger::Chained, _) => !summary.started.is_empty() || !summary.errors.is_empty(),
        (Trigger::Schedule, SummaryPolicy::Always) => true,
        (Trigger::Schedule, SummaryPolicy::Changes) => summary.has_news(),
    };
    if notify {
        let id = notifier
            .notify(&summary.notification(&config.environment))
            .await?;
        summary.notification = Some(id);
    }
    info!(
        started = summary.started.len(),
        deferred = summary.deferred.len(),
        already = summary.already_exported.len(),
        skipped = summary.skipped.len(),
        errors = summary.errors.len(),
        dry_run = config.dry_run,
        "scheduled run done"
    );
    match retry {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// The export-age objective after this run: the sources neither exported nor on their way whose
/// newest export is older than `MAX_EXPORT_AGE` go to `report::export_age`.
async fn check_age<R: Rds, N: Notifier, M: Remember, F: ExportFiles, C: Catalog>(
    config: &Config,
    p: &Ports<'_, R, N, M, F, C>,
    facts: &[SourceFacts],
    last: &domain::LastExports,
    retrying: &[String],
    summary: &mut RunSummary,
) -> Result<(), Error> {
    let exporting: Vec<&str> = summary
        .started
        .iter()
        .map(|e| e.source.as_str())
        // Its newest snapshot is exported or on its way: the objective is met or about to be.
        .chain(summary.already_exported.iter().map(|a| a.source.as_str()))
        .collect();
    let waiting: Vec<&str> = summary
        .deferred
        .iter()
        .map(|e| e.source.as_str())
        .chain(retrying.iter().map(String::as_str))
        .collect();
    let overdue = domain::overdue(
        facts,
        last,
        &exporting,
        &waiting,
        chrono::Utc::now(),
        config.max_export_age,
    );
    summary.overdue = overdue.keys().cloned().collect();
    crate::report::export_age(&overdue, config, p.memory, p.notifier).await
}

/// The run's figures as metrics.
fn count(summary: &RunSummary, dry_run: bool) {
    let mut metrics = Metrics::new(crate::FUNCTION);
    metrics
        .count(
            "ExportsStarted",
            if dry_run {
                0
            } else {
                summary.started.len() as u64
            },
        )
        .count("ExportsDeferred", summary.deferred.len() as u64)
        .count("ExportsFailed", summary.errors.len() as u64)
        .value(
            "ExportsRunningBefore",
            summary.running_before as f64,
            Unit::Count,
        );
    metrics.flush();
}

async fn export_event<R: Rds, N: Notifier, M: Remember, F: ExportFiles, C: Catalog>(
    event: RdsEvent,
    config: &Config,
    p: &Ports<'_, R, N, M, F, C>,
) -> Result<Response, Error> {
    let (rds, notifier) = (p.rds, p.notifier);
    let detail = &event.detail;
    let Some((kind, outcome)) = detail.export_outcome() else {
        return Err(Error::invalid_event(format!(
            "{} ({}) is not a snapshot export event (RDS-EVENT-0159..0164)",
            detail.event_id, detail.message
        )));
    };
    let tasks = rds.export_tasks(&detail.source_arn).await?;
    let task = domain::task_for_event(&tasks, &detail.source_arn, outcome);
    if let Some(t) = task.filter(|t| !t.id.starts_with(domain::TASK_PREFIX)) {
        info!(task = %t.id, snapshot = %detail.source_identifier, "an export someone else started; not reported");
        return Ok(Response::NotOurs {
            task_id: t.id.clone(),
            snapshot: detail.source_identifier.clone(),
        });
    }
    let mut report = ExportReport::new(kind, outcome, detail, task);
    if let (Some(t), bridgekeeper::events::ExportOutcome::Completed) = (task, outcome) {
        let c = crate::completion::complete(t, &report.source, config, p.exports).await;
        report.completion = Some(Box::new(c));
    }
    let id = notifier
        .notify(&report.notification(&config.environment, &detail.message))
        .await?;
    report.notification = Some(id);

    let mut metrics = Metrics::new(crate::FUNCTION);
    let name = match outcome {
        bridgekeeper::events::ExportOutcome::Completed => "ExportsCompleted",
        bridgekeeper::events::ExportOutcome::Failed => "ExportsFailed",
        bridgekeeper::events::ExportOutcome::Cancelled => "ExportsCancelled",
    };
    metrics.count(name, 1);
    if let Some(gb) = report.size_gb {
        metrics.value("ExportedGigabytes", gb as f64, Unit::Gigabytes);
    }
    if let Some(t) = report.completion.as_ref().and_then(|c| c.tables.as_ref()) {
        metrics
            .count("TablesExported", t.exported as u64)
            .count("TablesSkipped", t.skipped.len() as u64)
            .count("TablesFailed", t.failed.len() as u64)
            .count("ExportsEmpty", u64::from(!t.has_data));
    }
    metrics.flush();
    info!(snapshot = %report.snapshot, outcome = ?outcome, task = ?report.task_id, "export event reported");
    // A slot is free: the sources still waiting go now, not at the next nightly run.
    let next = scheduled(config, p, Trigger::Chained, None).await?;
    Ok(Response::ExportEvent {
        report,
        next: Some(next),
    })
}

/// An automated snapshot exists: export it now (through the same fair slot-filling as the
/// schedule), so a snapshot still `creating` at the scheduled time is not a day late.
async fn snapshot_created<R: Rds, N: Notifier, M: Remember, F: ExportFiles, C: Catalog>(
    event: RdsEvent,
    config: &Config,
    p: &Ports<'_, R, N, M, F, C>,
) -> Result<Response, Error> {
    let snapshot = event.detail.source_identifier.clone();
    let automated = snapshot.starts_with("rds:");
    let aws_backup = snapshot.starts_with(crate::snapshots::AWS_BACKUP_PREFIX);
    if !automated && !aws_backup && !config.manual_snapshots {
        info!(snapshot = %snapshot, "a manual snapshot; MANUAL_SNAPSHOTS is off");
        return Ok(Response::SnapshotCreated {
            source: String::new(),
            snapshot,
            run: None,
            ignored: Some("a manual snapshot, and MANUAL_SNAPSHOTS is off".into()),
        });
    }
    let source = if automated {
        crate::snapshots::source_of_snapshot(&snapshot).to_owned()
    } else {
        // AWS Backup's and manual names do not say whose they are: RDS does.
        let kind = if event.detail.source_type.contains("CLUSTER") {
            bridgekeeper::events::SnapshotKind::Cluster
        } else {
            bridgekeeper::events::SnapshotKind::Instance
        };
        match p.rds.snapshot_source(kind, &snapshot).await? {
            Some(source) => source,
            None => {
                return Ok(Response::SnapshotCreated {
                    source: String::new(),
                    snapshot,
                    run: None,
                    ignored: Some("RDS no longer lists the snapshot".into()),
                });
            }
        }
    };
    let (instances, clusters) = list_sources(config, p.rds).await?;
    let (selected, _) = domain::select_sources(&config.selection, &instances, &clusters);
    if !selected.iter().any(|s| s.id == source) {
        info!(snapshot = %snapshot, source = %source, "snapshot of a source that is not selected");
        return Ok(Response::SnapshotCreated {
            snapshot,
            source,
            run: None,
            ignored: Some("its source is not selected for export".into()),
        });
    }
    // The listing just made serves the slot-filling too.
    let run = scheduled(config, p, Trigger::Chained, Some((instances, clusters))).await?;
    Ok(Response::SnapshotCreated {
        snapshot,
        source,
        run: Some(run),
        ignored: None,
    })
}

#[cfg(test)]
mod tests {
    use bridgekeeper::config::Env;
    use bridgekeeper::notify::Severity;
    use chrono::TimeZone;

    use super::*;

    /// The handler with a store of its own and the given export bucket and catalog.
    async fn handle_with<R: Rds, N: Notifier>(
        event: serde_json::Value,
        config: &Config,
        rds: &R,
        notifier: &N,
        exports: Exports<'_, FakeFiles, FakeCatalog>,
    ) -> Result<Response, Error> {
        let memory = bridgekeeper::idempotency::testing::Memory::default();
        super::handle(event, config, rds, notifier, &memory, exports).await
    }

    /// The handler with a store of its own (what the export-age objective remembers).
    async fn handle<R: Rds, N: Notifier>(
        event: serde_json::Value,
        config: &Config,
        rds: &R,
        notifier: &N,
    ) -> Result<Response, Error> {
        let memory = bridgekeeper::idempotency::testing::Memory::default();
        super::handle(event, config, rds, notifier, &memory, no_exports()).await
    }
    use crate::domain::ExportTask;
    use crate::snapshots::Snapshot;

    const SCHEDULE: &str = include_str!("../../../events/snapshot-export/schedule.json");
    use crate::domain::SourceInfo;
    use crate::fakes::{COMPLETED, FakeCatalog, FakeFiles, FakeRds, no_exports};
    const SNAPSHOT_CREATED: &str =
        include_str!("../../../events/snapshot-export/snapshot-created.json");
    const ECR_PUSH: &str = include_str!("../../../events/image-rollout/push-latest.json");

    type FakeNotifier = bridgekeeper::notify::testing::Recorder;

    /// Bridgekeeper's completed export task of the snapshot `export-completed.json` is about.
    fn completed_task() -> ExportTask {
        let e: bridgekeeper::events::RdsEvent = serde_json::from_str(COMPLETED).unwrap();
        ExportTask {
            id: "bk-shop-db-2026-11-21-02-10-0badf00d".into(),
            source_arn: e.detail.source_arn.clone(),
            status: TaskStatus::Complete,
            s3_bucket: None,
            s3_prefix: None,
            failure_cause: None,
            warning: None,
            started: None,
            ended: None,
            size_gb: None,
        }
    }

    fn config(extra: &[(&'static str, &'static str)]) -> Config {
        let env = Env::from_pairs(crate::fakes::REQUIRED.iter().chain(extra).copied());
        Config::from_env(&env).unwrap()
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    async fn run(rds: &FakeRds, n: &FakeNotifier, cfg: &Config) -> RunSummary {
        match handle(json(SCHEDULE), cfg, rds, n).await.unwrap() {
            Response::Schedule(s) => s,
            other => panic!("expected a run summary, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn foreign_or_malformed_events_are_rejected_before_any_call() {
        use bridgekeeper::Classify;
        let (rds, n, cfg) = (
            FakeRds::with_instances(&["db"]),
            FakeNotifier::default(),
            config(&[]),
        );
        for (event, says) in [
            (
                json(ECR_PUSH),
                "source \"aws.ecr\", detail-type \"ECR Image Action\" is not handled",
            ),
            (json("{}"), "no source or detail-type"),
            (json("[1, 2]"), "expected an EventBridge event object"),
            (
                json(
                    r#"{"source": "aws.rds", "detail-type": "RDS DB Snapshot Event", "detail": {}}"#,
                ),
                "malformed RDS DB Snapshot Event event",
            ),
        ] {
            let err = handle(event, &cfg, &rds, &n).await.unwrap_err();
            assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
            assert!(err.to_string().contains(says), "{err}");
        }
        assert_eq!(rds.calls(), Vec::<String>::new());
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn schedule_starts_one_export_per_source_and_sends_one_summary() {
        let (rds, n, cfg) = (
            FakeRds::with_instances(&["a-db", "b-db"]),
            FakeNotifier::default(),
            config(&[]),
        );
        let s = run(&rds, &n, &cfg).await;
        let started: Vec<_> = s.started.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(started, ["a-db", "b-db"]);
        assert_eq!(rds.count("StartExportTask"), 2);
        let sent = n.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "[dev] RDS snapshot exports: 2 started");
        assert_eq!(s.notification.as_deref(), Some("msg-1"));
    }

    /// The review: a throttled StartExportTask after others had started returned the error, and
    /// the report of the started exports was lost. Now they are reported, then the run retries;
    /// the retry starts the rest and reports only those.
    #[tokio::test]
    async fn started_exports_are_reported_before_a_throttled_start_is_retried() {
        let mut rds = FakeRds::with_instances(&["a-db", "b-db", "c-db"]);
        rds.throttled_after = Some(1);
        let (n, cfg) = (FakeNotifier::default(), config(&[]));
        let err = handle(json(SCHEDULE), &cfg, &rds, &n).await.unwrap_err();
        assert_eq!(bridgekeeper::Classify::class(&err), Class::Retryable);
        let sent = n.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].subject.contains("1 started"), "{}", sent[0].subject);
        assert!(
            sent[0].body.contains("ThrottlingException"),
            "{}",
            sent[0].body
        );
        rds.throttled_after = None;
        let s = run(&rds, &n, &cfg).await;
        let started: Vec<_> = s.started.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(started, ["b-db", "c-db"]);
        // a-db and the throttled b-db, then b-db and c-db: a-db is never asked twice.
        assert_eq!(rds.count("StartExportTask"), 2 + 2);
    }

    #[tokio::test]
    async fn the_same_event_three_times_starts_each_export_once() {
        let (rds, n, cfg) = (
            FakeRds::with_instances(&["a-db", "b-db"]),
            FakeNotifier::default(),
            config(&[]),
        );
        for _ in 0..3 {
            run(&rds, &n, &cfg).await;
        }
        assert_eq!(rds.count("StartExportTask"), 2);
        assert_eq!(rds.tasks.lock().unwrap().len(), 2);
        // Runs two and three had nothing new to say.
        assert_eq!(n.sent().len(), 1);
    }

    #[tokio::test]
    async fn calls_grow_linearly_and_already_exported_snapshots_start_nothing() {
        let ids: Vec<String> = (0..8).map(|i| format!("db{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let (rds, n, cfg) = (
            FakeRds::with_instances(&ids),
            FakeNotifier::default(),
            config(&[]),
        );
        rds.tasks
            .lock()
            .unwrap()
            .extend(rds.snapshots.values().flatten().map(|s| ExportTask {
                id: format!("done-{}", s.id.len()),
                source_arn: s.arn.clone(),
                status: TaskStatus::Complete,
                s3_bucket: None,
                s3_prefix: None,
                failure_cause: None,
                warning: None,
                started: None,
                ended: None,
                size_gb: None,
            }));
        let s = run(&rds, &n, &cfg).await;
        assert_eq!(s.already_exported.len(), 8);
        // One listing each (instances, clusters, every export task), then one snapshot lookup
        // per source; nothing else.
        assert_eq!(rds.calls().len(), 3 + 8);
        assert_eq!(rds.count("StartExportTask"), 0);
    }

    #[tokio::test]
    async fn one_failing_source_is_reported_and_the_others_still_export() {
        let mut rds = FakeRds::with_instances(&["a-db", "locked-db", "c-db"]);
        rds.failing
            .insert("locked-db".into(), ("AccessDenied", 403));
        let (n, cfg) = (FakeNotifier::default(), config(&[]));
        let s = run(&rds, &n, &cfg).await;
        assert_eq!(s.started.len(), 2);
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors[0].source, "locked-db");
        assert!(s.errors[0].error.contains("AccessDenied"), "{:?}", s.errors);
        let sent = n.sent();
        assert_eq!(sent[0].severity, Severity::Error);
        assert!(
            sent[0]
                .body
                .contains("locked-db: rds:DescribeDBSnapshots failed: AccessDenied")
        );
    }

    #[tokio::test]
    async fn throttling_that_outlasts_the_sdk_fails_the_invocation_as_retryable() {
        use bridgekeeper::Classify;
        let mut rds = FakeRds::with_instances(&["a-db", "b-db"]);
        rds.failing.insert("b-db".into(), ("Throttling", 400));
        let n = FakeNotifier::default();
        let err = handle(json(SCHEDULE), &config(&[]), &rds, &n)
            .await
            .unwrap_err();
        assert_eq!(err.diagnostic().error_type, "Retryable.Aws");
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn dry_run_plans_the_same_exports_and_starts_none() {
        let (rds, n) = (FakeRds::with_instances(&["a-db"]), FakeNotifier::default());
        let s = run(&rds, &n, &config(&[("DRY_RUN", "true")])).await;
        assert!(s.dry_run);
        assert_eq!(s.started.len(), 1);
        assert_eq!(rds.count("StartExportTask"), 0);
        assert_eq!(
            n.sent()[0].subject,
            "[dev] RDS snapshot exports (dry run): 1 would start"
        );
    }

    #[tokio::test]
    async fn quota_defers_what_does_not_fit_and_says_so() {
        let mut rds = FakeRds::with_instances(&["a", "b", "c"]);
        rds.running = 4;
        let n = FakeNotifier::default();
        let s = run(&rds, &n, &config(&[])).await;
        assert_eq!(
            (s.started.len(), s.deferred.len(), s.running_before),
            (1, 2, 4)
        );
        assert_eq!(s.started[0].source, "a", "oldest snapshot first");
        assert!(
            n.sent()[0].subject.ends_with("1 started, 2 deferred"),
            "{}",
            n.sent()[0].subject
        );
    }

    #[tokio::test]
    async fn an_existing_task_id_counts_as_already_exporting() {
        let rds = FakeRds::with_instances(&["a-db"]);
        let (n, cfg) = (FakeNotifier::default(), config(&[]));
        // Another run started the same export between our look-up and our start.
        let plan_id = {
            let s = run(
                &FakeRds::with_instances(&["a-db"]),
                &FakeNotifier::default(),
                &config(&[("DRY_RUN", "true")]),
            )
            .await;
            s.started[0].task_id.clone()
        };
        rds.tasks.lock().unwrap().push(ExportTask {
            id: plan_id.clone(),
            source_arn: "arn:elsewhere".into(),
            status: TaskStatus::Starting,
            s3_bucket: None,
            s3_prefix: None,
            failure_cause: None,
            warning: None,
            started: None,
            ended: None,
            size_gb: None,
        });
        let s = run(&rds, &n, &cfg).await;
        assert!(s.started.is_empty());
        assert_eq!(s.already_exported[0].task_id, plan_id);
        assert!(s.errors.is_empty());
    }

    #[tokio::test]
    async fn summary_policy_never_stays_quiet_and_always_reports_quiet_nights() {
        let rds = FakeRds::with_instances(&["a-db"]);
        let n = FakeNotifier::default();
        run(&rds, &n, &config(&[("SUMMARY_NOTIFICATIONS", "never")])).await;
        assert!(n.sent().is_empty());
        run(&rds, &n, &config(&[("SUMMARY_NOTIFICATIONS", "always")])).await;
        assert_eq!(
            n.sent()[0].subject,
            "[dev] RDS snapshot exports: 0 started, 1 already exported"
        );
    }

    #[tokio::test]
    async fn export_completed_event_notifies_with_the_task_details() {
        let rds = FakeRds::default();
        let e: bridgekeeper::events::RdsEvent = serde_json::from_str(COMPLETED).unwrap();
        rds.tasks.lock().unwrap().push(ExportTask {
            id: "bk-shop-db-2026-11-21-02-10-0badf00d".into(),
            source_arn: e.detail.source_arn.clone(),
            status: TaskStatus::Complete,
            s3_bucket: Some("exports-bucket".into()),
            s3_prefix: Some("rds-exports/shop-db/2026-11-21".into()),
            failure_cause: None,
            warning: None,
            started: Some(chrono::Utc.with_ymd_and_hms(2026, 11, 21, 3, 0, 0).unwrap()),
            ended: Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 21, 3, 40, 0)
                    .unwrap(),
            ),
            size_gb: Some(3),
        });
        let n = FakeNotifier::default();
        let files = FakeFiles::export(
            FOLDER,
            serde_json::json!([
                {"target": "shop.public.orders", "status": "COMPLETE"}
            ]),
        );
        let exports = Exports {
            files: &files,
            catalog: &FakeCatalog::default(),
        };
        let Response::ExportEvent { report: r, next } =
            handle_with(json(COMPLETED), &config(&[]), &rds, &n, exports)
                .await
                .unwrap()
        else {
            panic!("expected an export report")
        };
        // The freed slot goes to the sources still waiting (none here: nothing selected).
        assert!(next.unwrap().started.is_empty());
        assert_eq!(
            r.s3_uri.as_deref(),
            Some(
                "s3://exports-bucket/rds-exports/shop-db/2026-11-21/bk-shop-db-2026-11-21-02-10-0badf00d/"
            )
        );
        assert_eq!((r.size_gb, r.duration_minutes), (Some(3), Some(40)));
        assert_eq!(rds.calls()[0], "DescribeExportTasks");
        assert_eq!(
            n.sent()[0].subject,
            "[dev] RDS export completed: shop-db (rds:shop-db-2026-11-21-02-10)"
        );
    }

    /// Where `export-completed.json`'s task wrote (as `completed_task` in the fakes' bucket).
    const FOLDER: &str = "rds-exports/shop-db/2026-11-21/bk-shop-db-2026-11-21-02-10-0badf00d/";

    /// The completed task of `export-completed.json`, written where [`FOLDER`] says.
    fn rds_with_completed_task() -> FakeRds {
        let rds = FakeRds::default();
        rds.tasks.lock().unwrap().push(ExportTask {
            s3_bucket: Some("exports-bucket".into()),
            s3_prefix: Some("rds-exports/shop-db/2026-11-21".into()),
            ..completed_task()
        });
        rds
    }

    async fn completion_of(
        files: &FakeFiles,
        catalog: &FakeCatalog,
        cfg: &Config,
    ) -> (ExportReport, bridgekeeper::notify::Notification) {
        let (rds, n) = (rds_with_completed_task(), FakeNotifier::default());
        let exports = Exports { files, catalog };
        let r = handle_with(json(COMPLETED), cfg, &rds, &n, exports)
            .await
            .unwrap();
        let Response::ExportEvent { report, .. } = r else {
            panic!("{r:?}")
        };
        (report, n.sent().remove(0))
    }

    /// aws-samples/rds-snapshot-export-to-s3-pipeline#17: an export RDS called complete held
    /// nothing. RDS says which tables it skipped, in the table list beside the data.
    #[tokio::test]
    async fn a_completed_export_that_skipped_tables_is_a_warning_naming_them() {
        let files = FakeFiles::export(
            FOLDER,
            serde_json::json!([
                {"target": "shop.public.orders", "status": "COMPLETE"},
                {"target": "shop.public.Weird Name", "status": "SKIPPED",
                 "warningMessage": "Column name contains special characters"},
                {"target": "shop.public.attachments", "status": "SKIPPED",
                 "warningMessage": "Row size exceeds the 2 GB limit"}
            ]),
        );
        let (r, sent) = completion_of(&files, &FakeCatalog::default(), &config(&[])).await;
        assert_eq!(sent.severity, Severity::Warning);
        assert!(
            sent.subject.contains("completed with warnings"),
            "{}",
            sent.subject
        );
        for line in [
            "Tables:   1 exported, 2 skipped, 0 failed",
            "shop.public.Weird Name: Column name contains special characters",
            "shop.public.attachments: Row size exceeds the 2 GB limit",
        ] {
            assert!(sent.body.contains(line), "{line:?} not in\n{}", sent.body);
        }
        let t = r.completion.unwrap().tables.unwrap();
        assert_eq!((t.exported, t.skipped.len()), (1, 2));
    }

    #[tokio::test]
    async fn a_completed_export_with_no_table_data_is_an_error() {
        let mut files = FakeFiles::export(FOLDER, serde_json::json!([]));
        files.objects.retain(|k, _| !k.ends_with(".parquet"));
        let (_, sent) = completion_of(&files, &FakeCatalog::default(), &config(&[])).await;
        assert_eq!(sent.severity, Severity::Error);
        assert!(sent.subject.contains("completed EMPTY"), "{}", sent.subject);
    }

    #[tokio::test]
    async fn an_export_folder_that_cannot_be_read_is_reported_not_failed() {
        let files = FakeFiles {
            refused: true,
            ..FakeFiles::default()
        };
        let (r, sent) = completion_of(&files, &FakeCatalog::default(), &config(&[])).await;
        assert_eq!(sent.severity, Severity::Warning);
        assert!(
            sent.body.contains("Not checked table by table"),
            "{}",
            sent.body
        );
        assert!(
            r.completion
                .unwrap()
                .unchecked
                .unwrap()
                .contains("AccessDenied")
        );
    }

    /// Query-ready: each exported table in the source's Glue database, one partition per
    /// export; a redelivered completion adds nothing twice.
    #[tokio::test]
    async fn with_the_catalog_on_each_exported_table_is_registered_once_per_export() {
        let files = FakeFiles::export(
            FOLDER,
            serde_json::json!([
                {"target": "shop.public.orders", "status": "COMPLETE",
                 "schemaMetadata": {"originalTypeMappings": [
                     {"columnName": "id", "expectedExportedType": "int64"}]}},
                {"target": "shop.public.skipped", "status": "SKIPPED"}
            ]),
        );
        let catalog = FakeCatalog::default();
        let cfg = config(&[("GLUE_DATABASE_PREFIX", "bk_dev_")]);
        for _ in 0..2 {
            let (r, sent) = completion_of(&files, &catalog, &cfg).await;
            assert_eq!(
                r.completion.unwrap().catalog,
                Some(("bk_dev_shop_db".to_owned(), 1))
            );
            assert!(
                sent.body
                    .contains("Catalog:  1 tables in Glue database bk_dev_shop_db")
            );
        }
        let all = catalog.tables.lock().unwrap();
        assert_eq!(
            all["bk_dev_shop_db"]["public_orders"],
            [format!("s3://exports-bucket/{FOLDER}shop/public.orders/")]
        );
    }

    #[tokio::test]
    async fn a_snapshot_created_event_exports_its_selected_source_now_once() {
        let (rds, n, cfg) = (
            FakeRds::with_instances(&["shop-db", "billing"]),
            FakeNotifier::default(),
            config(&[]),
        );
        for _ in 0..3 {
            let r = handle(json(SNAPSHOT_CREATED), &cfg, &rds, &n)
                .await
                .unwrap();
            let Response::SnapshotCreated {
                source, ignored, ..
            } = r
            else {
                panic!("{r:?}")
            };
            assert_eq!((source.as_str(), ignored), ("shop-db", None));
        }
        // The fair slot-filling ran: both waiting sources went, each exactly once.
        assert_eq!(rds.count("StartExportTask"), 2);
        // One listing of the sources per delivery serves both the check and the slot-filling.
        assert_eq!(rds.count("DescribeDBInstances"), 3);
    }

    /// A database AWS Backup manages has no automated snapshots: its `awsbackup:job-…` snapshot
    /// is its newest, found through RDS (the name does not say whose it is) and exported.
    #[tokio::test]
    async fn a_database_backed_up_by_aws_backup_is_exported_from_its_backup_snapshot() {
        let (mut rds, n, cfg) = (
            FakeRds::with_instances(&["shop-db"]),
            FakeNotifier::default(),
            config(&[]),
        );
        let backup = "awsbackup:job-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
        for s in rds.snapshots.get_mut("shop-db").unwrap() {
            s.arn = format!("arn:aws:rds:eu-west-1:123456789012:snapshot:{backup}");
            s.id = backup.into();
            s.snapshot_type = "awsbackup".into();
        }
        let mut created = json(SNAPSHOT_CREATED);
        created["detail"]["EventID"] = "RDS-EVENT-0042".into();
        created["detail"]["SourceIdentifier"] = backup.into();
        let r = handle(created, &cfg, &rds, &n).await.unwrap();
        let Response::SnapshotCreated {
            source,
            ignored,
            run,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!((source.as_str(), ignored), ("shop-db", None));
        let started = &run.unwrap().started;
        assert_eq!(started[0].snapshot, backup);
        assert!(
            domain::is_valid_task_id(&started[0].task_id),
            "{}",
            started[0].task_id
        );
        assert!(
            started[0].s3_uri.contains("/shop-db/"),
            "{}",
            started[0].s3_uri
        );
    }

    #[tokio::test]
    async fn in_a_region_without_export_to_s3_every_source_says_so_and_nothing_starts() {
        let (rds, n) = (
            FakeRds::with_instances(&["shop-db"]),
            FakeNotifier::default(),
        );
        let cfg = config(&[(
            "EXPORT_KMS_KEY_ARN",
            "arn:aws:kms:mx-central-1:123456789012:key/0b1e5e7f-1111-2222-3333-444455556666",
        )]);
        let s = run(&rds, &n, &cfg).await;
        assert!(s.started.is_empty());
        assert_eq!(s.skipped[0].source, "shop-db");
        assert!(
            s.skipped[0].reason.contains("mx-central-1"),
            "{:?}",
            s.skipped
        );
        assert_eq!(rds.count("StartExportTask"), 0);
    }

    #[tokio::test]
    async fn each_source_exports_only_what_export_only_names_for_it() {
        let (rds, n) = (
            FakeRds::with_instances(&["shop-db", "billing"]),
            FakeNotifier::default(),
        );
        let cfg = config(&[("EXPORT_ONLY", "shop-db:shop.public.orders,billing")]);
        let s = run(&rds, &n, &cfg).await;
        let only = |source: &str| {
            s.started
                .iter()
                .find(|e| e.source == source)
                .map(|e| e.export_only.clone())
                .unwrap()
        };
        assert_eq!(only("shop-db"), ["shop.public.orders"]);
        assert_eq!(only("billing"), ["billing"]);
    }

    /// A tagged database RDS cannot export is a person's news the first night, then not again.
    #[tokio::test]
    async fn a_source_rds_cannot_export_is_said_once() {
        let mut rds = FakeRds::with_instances(&["shop-db"]);
        rds.instances[0].engine = "sqlserver-se".into();
        let (n, memory) = (
            FakeNotifier::default(),
            bridgekeeper::idempotency::testing::Memory::default(),
        );
        let cfg = config(&[]);
        for _ in 0..3 {
            super::handle(json(SCHEDULE), &cfg, &rds, &n, &memory, no_exports())
                .await
                .unwrap();
        }
        let sent = n.sent();
        let mentions = sent
            .iter()
            .filter(|m| m.body.contains("engine sqlserver-se"))
            .count();
        assert_eq!(mentions, 1, "{sent:?}");
    }

    /// Aurora's export of live cluster data, opted in per cluster: the cluster's ARN is
    /// exported (no snapshot listed), once a night however often the run comes; a completed
    /// export of an earlier night does not count for tonight.
    #[tokio::test]
    async fn a_live_export_cluster_exports_its_data_once_a_night_without_a_snapshot() {
        let mut rds = FakeRds::default();
        let arn = "arn:aws:rds:eu-west-1:123456789012:cluster:orders-aurora";
        rds.clusters.push(SourceInfo {
            id: "orders-aurora".into(),
            kind: bridgekeeper::events::SnapshotKind::Cluster,
            engine: "aurora-postgresql".into(),
            tags: [("bridgekeeper:export".to_owned(), "true".to_owned())].into(),
            cluster: None,
            engine_mode: Some("provisioned".into()),
            arn: arn.into(),
        });
        // Last night's export of the same cluster, complete.
        rds.tasks.lock().unwrap().push(ExportTask {
            id: "bk-live-orders-aurora-2020-01-01-00000000".into(),
            source_arn: arn.into(),
            status: TaskStatus::Complete,
            ..completed_task()
        });
        let (n, cfg) = (
            FakeNotifier::default(),
            config(&[("LIVE_EXPORT_CLUSTERS", "orders-aurora")]),
        );
        for _ in 0..2 {
            run(&rds, &n, &cfg).await;
        }
        let tasks = rds.tasks.lock().unwrap();
        let tonight: Vec<_> = tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Starting)
            .collect();
        assert_eq!(tonight.len(), 1, "{tasks:?}");
        assert_eq!(tonight[0].source_arn, arn);
        assert!(
            tonight[0].id.starts_with("bk-live-orders-aurora-"),
            "{}",
            tonight[0].id
        );
        assert!(domain::is_valid_task_id(&tonight[0].id));
        assert_eq!(
            rds.count("DescribeDBSnapshots"),
            0,
            "no snapshot is listed for it"
        );
    }

    #[tokio::test]
    async fn a_manual_snapshot_is_exported_only_when_manual_snapshots_are_allowed() {
        let (rds, n) = (
            FakeRds::with_instances(&["shop-db"]),
            FakeNotifier::default(),
        );
        let mut created = json(SNAPSHOT_CREATED);
        created["detail"]["EventID"] = "RDS-EVENT-0042".into();
        created["detail"]["SourceIdentifier"] = "before-upgrade".into();
        let r = handle(created.clone(), &config(&[]), &rds, &n)
            .await
            .unwrap();
        let Response::SnapshotCreated { ignored, .. } = r else {
            panic!("{r:?}")
        };
        assert!(ignored.unwrap().contains("MANUAL_SNAPSHOTS"));
        assert_eq!(rds.count("StartExportTask"), 0);
        assert_eq!(rds.count("DescribeDBInstances"), 0, "nothing asked of RDS");
    }

    #[tokio::test]
    async fn a_snapshot_created_event_for_an_unselected_source_does_nothing() {
        let (rds, n, cfg) = (
            FakeRds::with_instances(&["billing"]),
            FakeNotifier::default(),
            config(&[]),
        );
        let r = handle(json(SNAPSHOT_CREATED), &cfg, &rds, &n)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Response::SnapshotCreated {
                    ignored: Some(_),
                    run: None,
                    ..
                }
            ),
            "{r:?}"
        );
        assert_eq!(rds.count("StartExportTask"), 0);
        assert_eq!(rds.count("DescribeExportTasks(all)"), 0);
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn an_export_completed_event_starts_the_next_waiting_export() {
        let mut rds = FakeRds::with_instances(&["a-db", "b-db", "c-db"]);
        // Four of the account's five slots are busy once this export has finished.
        rds.running = 4;
        rds.tasks.lock().unwrap().push(completed_task());
        let n = FakeNotifier::default();
        let r = handle(json(COMPLETED), &config(&[]), &rds, &n)
            .await
            .unwrap();
        let Response::ExportEvent {
            next: Some(next), ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!((next.started.len(), next.deferred.len()), (1, 2));
        assert_eq!(rds.count("StartExportTask"), 1);
        let subjects: Vec<String> = n.sent().into_iter().map(|m| m.subject).collect();
        assert_eq!(
            subjects.len(),
            2,
            "the export's report and what started next: {subjects:?}"
        );
    }

    #[tokio::test]
    async fn an_export_someone_else_started_is_not_reported_as_ours() {
        let rds = FakeRds::default();
        rds.tasks.lock().unwrap().push(ExportTask {
            id: "analytics-team-export".into(),
            ..completed_task()
        });
        let n = FakeNotifier::default();
        let r = handle(json(COMPLETED), &config(&[]), &rds, &n)
            .await
            .unwrap();
        assert!(matches!(r, Response::NotOurs { .. }), "{r:?}");
        assert!(n.sent().is_empty());
    }

    #[tokio::test]
    async fn skips_that_need_a_person_are_sent_even_when_only_changes_are() {
        let mut rds = FakeRds::with_instances(&["new-db"]);
        rds.snapshots.clear();
        let n = FakeNotifier::default();
        let s = run(&rds, &n, &config(&[("SUMMARY_NOTIFICATIONS", "changes")])).await;
        assert!(s.skipped[0].needs_person);
        let subjects: Vec<String> = n.sent().into_iter().map(|m| m.subject).collect();
        assert!(
            subjects.iter().any(|s| s.contains("RDS snapshot exports")),
            "{subjects:?}"
        );
        // And, never exported and not waiting for a slot, it is overdue.
        assert!(
            subjects.iter().any(|s| s.contains("overdue: new-db")),
            "{subjects:?}"
        );
    }

    #[tokio::test]
    async fn an_overdue_source_is_reported_once_when_it_crosses_and_once_when_it_recovers() {
        let mut rds = FakeRds::with_instances(&["old-db"]);
        let newest = rds.snapshots["old-db"][0].clone();
        let older = Snapshot {
            id: "rds:old-db-2026-11-18-02-10".into(),
            arn: "arn:aws:rds:eu-west-1:123456789012:snapshot:rds:old-db-2026-11-18-02-10".into(),
            created: Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 18, 2, 10, 0)
                    .unwrap(),
            ),
            ..newest.clone()
        };
        rds.snapshots.get_mut("old-db").unwrap().push(older.clone());
        let task =
            |id: &str, arn: &str, status, at: Option<chrono::DateTime<chrono::Utc>>| ExportTask {
                id: id.into(),
                source_arn: arn.into(),
                status,
                s3_bucket: None,
                s3_prefix: None,
                failure_cause: Some("KMS key disabled".into()),
                warning: None,
                started: None,
                ended: at,
                size_gb: None,
            };
        // The last good export was 50 hours ago; the newest snapshot failed three times.
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(50);
        let mut tasks = vec![task(
            "bk-old-db-1",
            &older.arn,
            TaskStatus::Complete,
            Some(long_ago),
        )];
        for a in 1..=3 {
            tasks.push(task(
                &format!("bk-old-db-n{a}"),
                &newest.arn,
                TaskStatus::Failed,
                None,
            ));
        }
        rds.tasks.lock().unwrap().extend(tasks);
        let (n, memory, cfg) = (
            FakeNotifier::default(),
            bridgekeeper::idempotency::testing::Memory::default(),
            config(&[]),
        );
        for _ in 0..2 {
            super::handle(json(SCHEDULE), &cfg, &rds, &n, &memory, no_exports())
                .await
                .unwrap();
        }
        // The nightly summaries (a failed export needs a person) aside, the objective speaks once.
        let objective = || -> Vec<bridgekeeper::notify::Notification> {
            n.sent()
                .into_iter()
                .filter(|m| m.subject.contains("RDS exports "))
                .collect()
        };
        let sent = objective();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].subject, "[dev] RDS exports overdue: old-db");
        assert_eq!(sent[0].severity, Severity::Error);
        assert!(sent[0].body.contains("(50 h ago)"), "{}", sent[0].body);
        // Exported again: one all-clear, then quiet.
        rds.tasks.lock().unwrap().push(task(
            "bk-old-db-by-hand",
            &newest.arn,
            TaskStatus::Complete,
            Some(chrono::Utc::now()),
        ));
        for _ in 0..2 {
            super::handle(json(SCHEDULE), &cfg, &rds, &n, &memory, no_exports())
                .await
                .unwrap();
        }
        let sent = objective();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(
            sent[1].subject,
            "[dev] RDS exports back within 36 h: old-db"
        );
        assert_eq!(sent[1].severity, Severity::Resolved);
    }

    /// EventBridge delivers at least once: the entry point runs the handler once per event id
    /// (the stack's idempotency store), so a redelivered completion is reported once.
    #[tokio::test]
    async fn a_redelivered_completion_event_is_reported_once() {
        let rds = FakeRds::default();
        rds.tasks.lock().unwrap().push(completed_task());
        let (n, store, cfg) = (
            FakeNotifier::default(),
            bridgekeeper::idempotency::testing::Memory::default(),
            config(&[]),
        );
        let lease = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        for _ in 0..3 {
            bridgekeeper::idempotency::once(&store, &json(COMPLETED), lease, "request-1", || {
                super::handle(json(COMPLETED), &cfg, &rds, &n, &store, no_exports())
            })
            .await
            .unwrap();
        }
        assert_eq!(n.sent().len(), 1);
    }
}
