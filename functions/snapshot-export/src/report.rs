//! What people read: the nightly summary and the export-finished notifications.

use std::fmt::Write;

use bridgekeeper::events::{ExportOutcome, RdsEventDetail, SnapshotKind};
use bridgekeeper::notify::{Notification, Severity};
use serde::Serialize;

use crate::completion::Completion;
use crate::domain::{AlreadyExported, Export, ExportTask, Skip};
use crate::snapshots::{source_of_snapshot, source_of_task};
use crate::verify::{TableCheck, named};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceError {
    pub source: String,
    pub error: String,
}

/// The Lambda's answer to a scheduled run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSummary {
    pub dry_run: bool,
    pub started: Vec<Export>,
    pub already_exported: Vec<AlreadyExported>,
    pub deferred: Vec<Export>,
    pub skipped: Vec<Skip>,
    pub errors: Vec<SourceError>,
    pub running_before: usize,
    /// Selected sources whose newest successful export is older than `MAX_EXPORT_AGE_HOURS`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overdue: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

impl RunSummary {
    /// Something started, waits, failed, or needs a person.
    pub fn has_news(&self) -> bool {
        !(self.started.is_empty()
            && self.deferred.is_empty()
            && self.errors.is_empty()
            && !self.skipped.iter().any(|s| s.needs_person))
    }

    pub fn notification(&self, environment: &str) -> Notification {
        let verb = if self.dry_run {
            "would start"
        } else {
            "started"
        };
        let mut counts = vec![format!("{} {verb}", self.started.len())];
        for (n, what) in [
            (self.deferred.len(), "deferred"),
            (self.errors.len(), "failed"),
            (self.already_exported.len(), "already exported"),
        ] {
            if n > 0 {
                counts.push(format!("{n} {what}"));
            }
        }
        let dry = if self.dry_run { " (dry run)" } else { "" };
        let subject = format!(
            "[{environment}] RDS snapshot exports{dry}: {}",
            counts.join(", ")
        );
        let mut body = String::new();
        let section = |body: &mut String, title: &str, lines: Vec<String>| {
            if !lines.is_empty() {
                let _ = writeln!(body, "{title}:");
                for l in lines {
                    let _ = writeln!(body, "  - {l}");
                }
                body.push('\n');
            }
        };
        section(
            &mut body,
            if self.dry_run {
                "Would start"
            } else {
                "Started"
            },
            self.started
                .iter()
                .map(|e| format!("{} ({}) → {}", e.source, e.snapshot, e.s3_uri))
                .collect(),
        );
        section(
            &mut body,
            "Failed",
            self.errors
                .iter()
                .map(|e| format!("{}: {}", e.source, e.error))
                .collect(),
        );
        section(
            &mut body,
            &format!(
                "Deferred (no free export slot: {} were running), an export finishing or the next \
                 run picks them up, longest-unexported first",
                self.running_before
            ),
            self.deferred
                .iter()
                .map(|e| format!("{} ({})", e.source, e.snapshot))
                .collect(),
        );
        section(
            &mut body,
            "Already exported or exporting",
            self.already_exported
                .iter()
                .map(|a| {
                    format!(
                        "{} ({}): task {} is {:?}",
                        a.source, a.snapshot, a.task_id, a.status
                    )
                })
                .collect(),
        );
        section(
            &mut body,
            "Skipped",
            self.skipped
                .iter()
                .map(|s| format!("{}: {}", s.source, s.reason))
                .collect(),
        );
        let severity = if self.errors.is_empty() {
            Severity::Info
        } else {
            Severity::Error
        };
        Notification::new(subject, body.trim_end().to_owned(), severity)
    }
}

/// The Lambda's answer to an export event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    pub outcome: ExportOutcome,
    pub kind: SnapshotKind,
    pub snapshot: String,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_gb: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<String>,
    /// RDS's `WarningMessage` on a completed task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// A completed export, checked table by table and catalogued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion: Option<Box<Completion>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<String>,
}

impl ExportReport {
    pub fn new(
        kind: SnapshotKind,
        outcome: ExportOutcome,
        detail: &RdsEventDetail,
        task: Option<&ExportTask>,
    ) -> Self {
        ExportReport {
            outcome,
            kind,
            snapshot: detail.source_identifier.clone(),
            source: task
                .map_or_else(
                    || source_of_snapshot(&detail.source_identifier),
                    |t| source_of_task(t.s3_prefix.as_deref(), &t.source_arn),
                )
                .to_owned(),
            task_id: task.map(|t| t.id.clone()),
            s3_uri: task.and_then(ExportTask::s3_uri),
            size_gb: task.and_then(|t| t.size_gb),
            duration_minutes: task.and_then(|t| Some((t.ended? - t.started?).num_minutes())),
            failure_cause: task.and_then(|t| t.failure_cause.clone()),
            warning: task.and_then(|t| t.warning.clone()),
            completion: None,
            notification: None,
        }
    }

    /// A completed export that skipped or failed tables, carries RDS's warning or could not be
    /// checked is a warning; one that exported no table data at all is an error.
    fn completed_severity(&self) -> (&'static str, Severity) {
        let tables = self.completion.as_ref().and_then(|c| c.tables.as_ref());
        if tables.is_some_and(|t| !t.has_data) {
            return ("completed EMPTY", Severity::Error);
        }
        let doubtful = tables.is_some_and(TableCheck::is_incomplete)
            || self.warning.is_some()
            || self
                .completion
                .as_ref()
                .is_some_and(|c| c.unchecked.is_some() || c.catalog_error.is_some());
        if doubtful {
            ("completed with warnings", Severity::Warning)
        } else {
            ("completed", Severity::Info)
        }
    }

    pub fn notification(&self, environment: &str, message: &str) -> Notification {
        let (what, severity) = match self.outcome {
            ExportOutcome::Completed => self.completed_severity(),
            ExportOutcome::Failed => ("FAILED", Severity::Error),
            ExportOutcome::Cancelled => ("cancelled", Severity::Warning),
        };
        let kind = match self.kind {
            SnapshotKind::Instance => "DB instance",
            SnapshotKind::Cluster => "Aurora cluster",
        };
        let subject = format!(
            "[{environment}] RDS export {what}: {} ({})",
            self.source, self.snapshot
        );
        let mut body = format!(
            "Export of snapshot {} ({kind} {}) {what}.\n",
            self.snapshot, self.source
        );
        let mut line = |label: &str, value: String| {
            let _ = writeln!(body, "{label:<10}{value}");
        };
        if let Some(cause) = &self.failure_cause {
            line("Cause:", cause.clone());
        }
        if let Some(uri) = &self.s3_uri {
            line("Location:", uri.clone());
        }
        if let Some(gb) = self.size_gb {
            line("Size:", format!("{gb} GB extracted"));
        }
        if let Some(min) = self.duration_minutes {
            line("Duration:", format!("{min} min"));
        }
        if let Some(id) = &self.task_id {
            line("Task:", id.clone());
        }
        line("RDS says:", message.to_owned());
        if let Some(w) = &self.warning {
            line("Warning:", w.clone());
        }
        if let Some(c) = &self.completion {
            self.completion_lines(c, &mut body);
        }
        if self.outcome == ExportOutcome::Failed {
            body.push_str("\nThe next nightly run retries a failed export (up to MAX_EXPORT_ATTEMPTS times).\n");
        }
        Notification::new(subject, body.trim_end().to_owned(), severity)
            .attribute("source", self.source.clone())
            .attribute("outcome", format!("{:?}", self.outcome).to_lowercase())
    }

    fn completion_lines(&self, c: &Completion, body: &mut String) {
        if let Some(t) = &c.tables {
            let _ = writeln!(
                body,
                "{:<10}{} exported, {} skipped, {} failed",
                "Tables:",
                t.exported,
                t.skipped.len(),
                t.failed.len()
            );
            if !t.has_data {
                body.push_str("\nNo table data was written: the export holds nothing to query. Check the export's database list (ExportOnly) and RDS's export limitations.\n");
            }
            for (label, missing) in [("Skipped", &t.skipped), ("Failed", &t.failed)] {
                if !missing.is_empty() {
                    let _ = writeln!(body, "\n{label} by RDS:");
                    for l in named(missing) {
                        let _ = writeln!(body, "  {l}");
                    }
                }
            }
        }
        if let Some(why) = &c.unchecked {
            let _ = writeln!(body, "\nNot checked table by table: {why}");
        }
        if let Some((db, n)) = &c.catalog {
            let _ = writeln!(body, "{:<10}{n} tables in Glue database {db}", "Catalog:");
        }
        if let Some(e) = &c.catalog_error {
            let _ = writeln!(body, "\nNot registered in the Glue catalog: {e}");
        }
    }
}

const OVERDUE_KEY: &str = "slo#overdue";

/// The export-age objective: one error when sources cross `MAX_EXPORT_AGE_HOURS`, one all-clear
/// when they are back; the set last reported lives in the stack's store, so neither the nightly
/// run nor a cold start repeats it. If the store cannot be read, everything overdue is reported.
pub async fn export_age<M, N>(
    overdue: &std::collections::BTreeMap<String, String>,
    config: &crate::config::Config,
    memory: &M,
    notifier: &N,
) -> Result<(), bridgekeeper::Error>
where
    M: bridgekeeper::idempotency::Remember,
    N: bridgekeeper::notify::Notifier,
{
    use std::collections::BTreeSet;
    use std::fmt::Write;
    let before: BTreeSet<String> = match memory.recall(OVERDUE_KEY).await {
        Ok(v) => v
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(e) => {
            bridgekeeper::idempotency::skipped(OVERDUE_KEY, &e);
            BTreeSet::new()
        }
    };
    let now: BTreeSet<String> = overdue.keys().cloned().collect();
    if now == before {
        return Ok(());
    }
    let hours = config.max_export_age.num_hours();
    let crossed: Vec<&String> = now.difference(&before).collect();
    let recovered: Vec<&String> = before.difference(&now).collect();
    if !crossed.is_empty() {
        let names: Vec<&str> = crossed.iter().map(|s| s.as_str()).collect();
        let mut body = format!(
            "These sources have no successful export in the last {hours} h (MAX_EXPORT_AGE_HOURS):\n"
        );
        for s in &crossed {
            let _ = writeln!(body, "  {s}: {}", overdue[*s]);
        }
        body.push_str(
            "\nThe nightly run and each finished export keep trying; see the run summaries.",
        );
        let n = Notification::new(
            format!(
                "[{}] RDS exports overdue: {}",
                config.environment,
                names.join(", ")
            ),
            body,
            Severity::Error,
        )
        .array_attribute("source", names.iter().copied());
        notifier.notify(&n).await?;
    }
    if !recovered.is_empty() {
        let names: Vec<&str> = recovered.iter().map(|s| s.as_str()).collect();
        let n = Notification::new(
            format!(
                "[{}] RDS exports back within {hours} h: {}",
                config.environment,
                names.join(", ")
            ),
            format!("Exported again within {hours} h: {}.", names.join(", ")),
            Severity::Resolved,
        )
        .array_attribute("source", names.iter().copied());
        notifier.notify(&n).await?;
    }
    let value = now.iter().cloned().collect::<Vec<_>>().join("\n");
    if let Err(e) = memory.remember(OVERDUE_KEY, &value).await {
        tracing::warn!(error = %e, "overdue sources not remembered; a cold start may repeat them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridgekeeper::events::RdsEvent;
    use chrono::TimeZone;

    use crate::domain::TaskStatus;

    fn completed_task() -> ExportTask {
        ExportTask {
            id: "bk-shop-db-2026-11-21-02-10-1a2b3c4d".into(),
            source_arn: "arn:aws:rds:eu-west-1:123456789012:snapshot:rds:shop-db-2026-11-21-02-10"
                .into(),
            status: TaskStatus::Complete,
            s3_bucket: Some("exports".into()),
            s3_prefix: Some("rds-exports/shop-db/2026-11-21".into()),
            failure_cause: None,
            warning: None,
            started: Some(chrono::Utc.with_ymd_and_hms(2026, 11, 21, 3, 0, 0).unwrap()),
            ended: Some(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 21, 3, 41, 0)
                    .unwrap(),
            ),
            size_gb: Some(12),
        }
    }

    #[test]
    fn completed_export_says_where_how_big_and_how_long() {
        let e: RdsEvent = serde_json::from_str(include_str!(
            "../../../events/snapshot-export/export-completed.json"
        ))
        .unwrap();
        let r = ExportReport::new(
            SnapshotKind::Instance,
            ExportOutcome::Completed,
            &e.detail,
            Some(&completed_task()),
        );
        let n = r.notification("prod", &e.detail.message);
        assert_eq!(
            n.subject,
            "[prod] RDS export completed: shop-db (rds:shop-db-2026-11-21-02-10)"
        );
        assert_eq!(n.severity, Severity::Info);
        assert!(n.body.contains("Location: s3://exports/rds-exports/shop-db/2026-11-21/bk-shop-db-2026-11-21-02-10-1a2b3c4d/"), "{}", n.body);
        assert!(n.body.contains("Size:     12 GB extracted"), "{}", n.body);
        assert!(n.body.contains("Duration: 41 min"), "{}", n.body);
        assert_eq!(n.attributes["outcome"], "completed");
    }

    #[test]
    fn failed_export_carries_the_cause_and_is_an_error() {
        let e: RdsEvent = serde_json::from_str(include_str!(
            "../../../events/snapshot-export/cluster-export-failed.json"
        ))
        .unwrap();
        let task = ExportTask {
            status: TaskStatus::Failed,
            failure_cause: Some("The IAM role does not have s3:PutObject on the bucket".into()),
            warning: None,
            size_gb: None,
            s3_prefix: Some("rds-exports/orders-aurora/2026-11-21".into()),
            ..completed_task()
        };
        let r = ExportReport::new(
            SnapshotKind::Cluster,
            ExportOutcome::Failed,
            &e.detail,
            Some(&task),
        );
        let n = r.notification("prod", &e.detail.message);
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.subject
                .starts_with("[prod] RDS export FAILED: orders-aurora"),
            "{}",
            n.subject
        );
        assert!(
            n.body
                .contains("Cause:    The IAM role does not have s3:PutObject"),
            "{}",
            n.body
        );
        assert!(n.body.contains("Aurora cluster orders-aurora"));
    }

    #[test]
    fn summary_counts_and_lists_what_happened() {
        let s = RunSummary {
            errors: vec![SourceError {
                source: "legacy-db".into(),
                error: "rds:DescribeDBSnapshots failed: AccessDenied".into(),
            }],
            skipped: vec![Skip {
                source: "new-db".into(),
                reason: "no available automated snapshot".into(),
                needs_person: true,
                unsupported: false,
            }],
            running_before: 5,
            ..RunSummary::default()
        };
        assert!(s.has_news());
        let n = s.notification("dev");
        assert_eq!(n.subject, "[dev] RDS snapshot exports: 0 started, 1 failed");
        assert_eq!(n.severity, Severity::Error);
        assert!(
            n.body
                .contains("Failed:\n  - legacy-db: rds:DescribeDBSnapshots failed: AccessDenied"),
            "{}",
            n.body
        );
        assert!(
            n.body
                .contains("Skipped:\n  - new-db: no available automated snapshot")
        );
        assert!(!RunSummary::default().has_news());
    }
}
