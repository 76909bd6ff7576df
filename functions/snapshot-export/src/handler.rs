//! Event in, plan, act, report. The only place that knows the event shapes.

use bridgekeeper::events::{
    RDS_CLUSTER_SNAPSHOT_EVENT, RDS_SNAPSHOT_EVENT, RdsEvent, SCHEDULED_EVENT, ScheduledEvent,
};
use bridgekeeper::metrics::{Metrics, Unit};
use bridgekeeper::notify::Notifier;
use bridgekeeper::{Class, Error};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::{Rds, Started};
use crate::config::{Config, SummaryPolicy};
use crate::domain::{self, AlreadyExported, Destination, SourceFacts, TaskStatus};
use crate::report::{ExportReport, RunSummary, SourceError};

/// The Lambda's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Response {
    Schedule(RunSummary),
    ExportEvent(ExportReport),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    source: Option<String>,
    #[serde(rename = "detail-type", default)]
    detail_type: Option<String>,
}

pub async fn handle<R: Rds, N: Notifier>(
    event: serde_json::Value,
    config: &Config,
    rds: &R,
    notifier: &N,
) -> Result<Response, Error> {
    let envelope: Envelope = serde_json::from_value(event.clone())
        .map_err(|e| Error::invalid_event(format!("expected an EventBridge event object: {e}")))?;
    let kind = (
        envelope.source.as_deref().unwrap_or(""),
        envelope.detail_type.as_deref().unwrap_or(""),
    );
    let malformed =
        |e: serde_json::Error| Error::invalid_event(format!("malformed {} event: {e}", kind.1));
    match kind {
        k if k == SCHEDULED_EVENT => {
            let _: ScheduledEvent = serde_json::from_value(event).map_err(malformed)?;
            scheduled(config, rds, notifier)
                .await
                .map(Response::Schedule)
        }
        k if k == RDS_SNAPSHOT_EVENT || k == RDS_CLUSTER_SNAPSHOT_EVENT => {
            let e: RdsEvent = serde_json::from_value(event).map_err(malformed)?;
            export_event(e, config, rds, notifier)
                .await
                .map(Response::ExportEvent)
        }
        ("", "") => Err(Error::invalid_event(
            "no source or detail-type: expected a Scheduled Event or an RDS snapshot export event",
        )),
        (source, detail_type) => Err(Error::invalid_event(format!(
            "source {source:?}, detail-type {detail_type:?} is not handled: expected a Scheduled Event \
             or an RDS snapshot export event (RDS-EVENT-0159..0164)"
        ))),
    }
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

async fn scheduled<R: Rds, N: Notifier>(
    config: &Config,
    rds: &R,
    notifier: &N,
) -> Result<RunSummary, Error> {
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
    let (sources, skipped) = domain::select_sources(&config.selection, &instances, &clusters);

    let mut errors = Vec::new();
    let mut facts = Vec::with_capacity(sources.len());
    for source in sources {
        let snapshot = match rds.snapshots(&source).await {
            Ok(snaps) => domain::newest_automated(&snaps).cloned(),
            Err(e) => {
                per_source(&source.id, e, &mut errors)?;
                continue;
            }
        };
        let tasks = match &snapshot {
            Some(s) => match rds.export_tasks(&s.arn).await {
                Ok(t) => t,
                Err(e) => {
                    per_source(&source.id, e, &mut errors)?;
                    continue;
                }
            },
            None => vec![],
        };
        facts.push(SourceFacts {
            source,
            snapshot,
            tasks,
        });
    }

    let dest = Destination {
        bucket: config.bucket.clone(),
        prefix: config.prefix.clone(),
        role_arn: config.role_arn.to_string(),
        kms_key_arn: config.kms_key_arn.to_string(),
        export_only: config.export_only.clone(),
    };
    let mut plan = domain::plan(&facts, &dest, 0, config.max_concurrent, config.max_attempts);
    // Only ask for the account's running exports when there is something to start.
    if !plan.start.is_empty() {
        let running = rds.running_exports().await?;
        plan = domain::plan(
            &facts,
            &dest,
            running,
            config.max_concurrent,
            config.max_attempts,
        );
    }

    let mut summary = RunSummary {
        dry_run: config.dry_run,
        already_exported: plan.already_exported,
        deferred: plan.deferred,
        skipped: [skipped, plan.skipped].concat(),
        running_before: plan.running_before,
        errors,
        ..RunSummary::default()
    };
    for export in plan.start {
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
            Err(e) => per_source(&export.source, e, &mut summary.errors)?,
        }
    }

    let mut metrics = Metrics::new(crate::FUNCTION);
    metrics
        .count(
            "ExportsStarted",
            if config.dry_run {
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

    let notify = match config.summary {
        SummaryPolicy::Always => true,
        SummaryPolicy::Changes => summary.has_news(),
        SummaryPolicy::Never => false,
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
    Ok(summary)
}

async fn export_event<R: Rds, N: Notifier>(
    event: RdsEvent,
    config: &Config,
    rds: &R,
    notifier: &N,
) -> Result<ExportReport, Error> {
    let detail = &event.detail;
    let Some((kind, outcome)) = detail.export_outcome() else {
        return Err(Error::invalid_event(format!(
            "{} ({}) is not a snapshot export event (RDS-EVENT-0159..0164)",
            detail.event_id, detail.message
        )));
    };
    let tasks = rds.export_tasks(&detail.source_arn).await?;
    let task = domain::task_for_event(&tasks, &detail.source_arn, outcome);
    let mut report = ExportReport::new(kind, outcome, detail, task);
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
    metrics.flush();
    info!(snapshot = %report.snapshot, outcome = ?outcome, task = ?report.task_id, "export event reported");
    Ok(report)
}
