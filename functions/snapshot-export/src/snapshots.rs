//! Pure: which of a source's snapshots is its newest exportable one, and whose a snapshot or an
//! export task is.
//!
//! Automated snapshots, and AWS Backup's: once AWS Backup manages a database's backups, RDS
//! keeps no automated ones, and its snapshots are AWS Backup's (`awsbackup:job-<id>`, of type
//! `awsbackup` for an instance; for Aurora that type does not apply and they are listed as
//! `manual`: DescribeDBSnapshots' and DescribeDBClusterSnapshots' `SnapshotType`). Other manual
//! snapshots only when `MANUAL_SNAPSHOTS` allows them: they are often ad hoc copies.

use chrono::{DateTime, Utc};

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

/// AWS Backup's name for the RDS snapshots it takes.
pub const AWS_BACKUP_PREFIX: &str = "awsbackup:";

impl Snapshot {
    pub fn is_aws_backup(&self) -> bool {
        self.snapshot_type.eq_ignore_ascii_case("awsbackup")
            || self.id.starts_with(AWS_BACKUP_PREFIX)
    }

    /// A kind this deployment exports: automated, AWS Backup's, and manual ones if allowed.
    pub fn is_wanted(&self, manual: bool) -> bool {
        self.snapshot_type.eq_ignore_ascii_case("automated")
            || self.is_aws_backup()
            || (manual && self.snapshot_type.eq_ignore_ascii_case("manual"))
    }
}

/// The newest available snapshot of a kind this deployment exports; shared, public and
/// unfinished ones are never candidates.
pub fn newest_exportable(snapshots: &[Snapshot], manual: bool) -> Option<&Snapshot> {
    snapshots
        .iter()
        .filter(|s| s.is_wanted(manual) && s.status.eq_ignore_ascii_case("available"))
        .filter(|s| s.created.is_some())
        .max_by_key(|s| s.created)
}

/// An Aurora cluster's live data, as tonight's "snapshot" of it: `StartExportTask` takes the
/// cluster's ARN ("Exporting DB cluster data to Amazon S3"). One a day (UTC), so its task id —
/// from the name, with the day in it — starts one export a day however often the run comes.
pub fn live(cluster: &str, cluster_arn: &str, now: DateTime<Utc>) -> Snapshot {
    let day = now.date_naive();
    Snapshot {
        id: format!("live:{cluster}-{day}"),
        arn: cluster_arn.to_owned(),
        created: day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        snapshot_type: "live".into(),
        status: "available".into(),
    }
}

/// `arn:...:snapshot:rds:shop-db-2026-11-21-02-10` → `rds:shop-db-2026-11-21-02-10`.
pub fn snapshot_id_of_arn(arn: &str) -> &str {
    arn.split_once(":cluster-snapshot:")
        .or_else(|| arn.split_once(":snapshot:"))
        .map_or(arn, |(_, id)| id)
}

/// `rds:shop-db-2026-11-21-02-10` → `shop-db`: the source of an automated snapshot. Any other
/// name (AWS Backup's, a manual one) does not say its source: it comes back unchanged.
pub fn source_of_snapshot(snapshot_id: &str) -> &str {
    let id = snapshot_id.strip_prefix("rds:").unwrap_or(snapshot_id);
    // Automated snapshot names end in -YYYY-MM-DD-HH-MM (16 characters and the hyphen).
    let stamp = id.len().checked_sub(17).filter(|&i| {
        id.as_bytes()[i] == b'-' && id[i + 1..].chars().all(|c| c.is_ascii_digit() || c == '-')
    });
    stamp.map_or(id, |i| &id[..i])
}

/// The source an export task exported: Bridgekeeper writes to `<prefix>/<source>/<date>`
/// (`domain::export_prefix`), which names it whatever the snapshot is called; a task without
/// that shape (someone else's) falls back to the snapshot's name.
pub fn source_of_task<'t>(s3_prefix: Option<&'t str>, source_arn: &'t str) -> &'t str {
    let from_prefix = s3_prefix.and_then(|p| {
        let mut parts = p.trim_matches('/').rsplit('/');
        let date = parts.next()?;
        let source = parts.next()?;
        let is_date = date.len() == 10
            && date.char_indices().all(|(i, c)| {
                if i == 4 || i == 7 {
                    c == '-'
                } else {
                    c.is_ascii_digit()
                }
            });
        (is_date && !source.is_empty()).then_some(source)
    });
    from_prefix.unwrap_or_else(|| source_of_snapshot(snapshot_id_of_arn(source_arn)))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).single()
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

    #[test]
    fn the_newest_automated_snapshot_and_never_a_manual_or_unfinished_one() {
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
            newest_exportable(&snaps, false).unwrap().id,
            "rds:db-2026-11-20-02-10"
        );
        assert_eq!(newest_exportable(&snaps[2..], false), None);
        // Allowed, the manual one is the newest.
        assert_eq!(
            newest_exportable(&snaps, true).unwrap().id,
            "before-upgrade"
        );
    }

    #[test]
    fn aws_backups_snapshots_count_for_instances_and_aurora_alike() {
        let instance = [
            snap("awsbackup:job-1111", at(19, 2), "awsbackup", "available"),
            snap("awsbackup:job-2222", at(20, 2), "awsbackup", "available"),
            snap("shared-copy", at(21, 2), "shared", "available"),
        ];
        assert_eq!(
            newest_exportable(&instance, false).unwrap().id,
            "awsbackup:job-2222"
        );
        // Aurora lists AWS Backup's cluster snapshots as manual: the name tells them apart.
        let cluster = [
            snap("awsbackup:job-3333", at(20, 2), "manual", "available"),
            snap("hand-made", at(21, 2), "manual", "available"),
        ];
        assert_eq!(
            newest_exportable(&cluster, false).unwrap().id,
            "awsbackup:job-3333"
        );
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
    fn a_task_names_its_source_by_where_it_wrote_whatever_the_snapshot_is_called() {
        let backup = "arn:aws:rds:eu-west-1:123456789012:snapshot:awsbackup:job-1111";
        assert_eq!(
            source_of_task(Some("rds-exports/orders/2026-11-20"), backup),
            "orders"
        );
        assert_eq!(source_of_task(Some("orders/2026-11-20"), backup), "orders");
        let automated = "arn:aws:rds:eu-west-1:123456789012:snapshot:rds:shop-2026-11-20-02-10";
        assert_eq!(source_of_task(Some("elsewhere"), automated), "shop");
        assert_eq!(source_of_task(None, automated), "shop");
    }
}
