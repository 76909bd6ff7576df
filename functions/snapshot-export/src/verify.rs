//! Pure: what a completed export really holds. RDS reports an export task complete even when it
//! skipped tables it cannot export (special characters in column names, rows near 2 GB, large
//! LOBs); it says so in the task's `WarningMessage` and, table by table, in the
//! `export_tables_info_<task>_from_<m>_to_<n>.json` files it writes at the top of the export's
//! folder (`export_info_<task>.json` holds the totals). Table data sits beside them, one folder
//! per database (`<database>/<schema>.<table>/…` for PostgreSQL, `<database>/<database>.<table>/…`
//! for MySQL): a completed export with no such folder exported nothing.

use serde::{Deserialize, Serialize};

/// Tables named in a message before the rest are only counted.
pub const NAMED: usize = 10;

/// What one `export_tables_info_*.json` says, as far as the check reads it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TablesInfo {
    #[serde(rename = "perTableStatus", default)]
    pub tables: Vec<TableStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TableStatus {
    /// `database.schema.table` (PostgreSQL) or `database.table` (MySQL).
    pub target: String,
    /// `COMPLETE`, `SKIPPED`, `FAILED`.
    #[serde(default)]
    pub status: String,
    #[serde(rename = "warningMessage", default)]
    pub warning_message: Option<String>,
    #[serde(rename = "failureCause", default)]
    pub failure_cause: Option<String>,
    #[serde(rename = "sizeGB", default)]
    pub size_gb: Option<f64>,
    /// Column names and the Parquet types RDS wrote (for the Glue catalog).
    #[serde(rename = "schemaMetadata", default)]
    #[serde(skip_serializing)]
    pub schema: Option<serde_json::Value>,
}

/// A table RDS did not export, and RDS's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub table: String,
    pub reason: String,
}

/// The verdict on a completed export.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TableCheck {
    pub exported: usize,
    pub skipped: Vec<Missing>,
    pub failed: Vec<Missing>,
    /// The export's folder holds a database folder (table data).
    pub has_data: bool,
    /// Info files that could not be read as RDS writes them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
    /// Every table the info files list (for the catalog).
    #[serde(skip)]
    pub tables: Vec<TableStatus>,
}

impl TableCheck {
    /// Tables are missing, or nothing was exported at all.
    pub fn is_incomplete(&self) -> bool {
        !self.skipped.is_empty() || !self.failed.is_empty() || !self.has_data
    }
}

/// `export_tables_info_*.json` among the names at the top of an export's folder.
pub fn is_tables_info(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.starts_with("export_tables_info_") && name.ends_with(".json")
}

/// The verdict from the info files' contents (`(key, bytes)`) and whether table data exists.
pub fn check(files: &[(String, Vec<u8>)], has_data: bool) -> TableCheck {
    let mut out = TableCheck {
        has_data,
        ..TableCheck::default()
    };
    for (key, bytes) in files {
        let Ok(info) = serde_json::from_slice::<TablesInfo>(bytes) else {
            out.unreadable.push(key.clone());
            continue;
        };
        for t in info.tables {
            let reason = || {
                t.warning_message
                    .clone()
                    .or_else(|| t.failure_cause.clone())
                    .unwrap_or_else(|| format!("status {}", t.status))
            };
            match t.status.to_ascii_uppercase().as_str() {
                "COMPLETE" | "COMPLETED" => out.exported += 1,
                "SKIPPED" => out.skipped.push(Missing {
                    table: t.target.clone(),
                    reason: reason(),
                }),
                _ => out.failed.push(Missing {
                    table: t.target.clone(),
                    reason: reason(),
                }),
            }
            out.tables.push(t);
        }
    }
    out
}

/// Lines naming the first [`NAMED`] tables with their reasons, then a count.
pub fn named(tables: &[Missing]) -> Vec<String> {
    let mut lines: Vec<String> = tables
        .iter()
        .take(NAMED)
        .map(|m| format!("{}: {}", m.table, m.reason))
        .collect();
    if tables.len() > NAMED {
        lines.push(format!("and {} more", tables.len() - NAMED));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(tables: serde_json::Value) -> (String, Vec<u8>) {
        (
            "exports/db/2026-11-21/bk-x/export_tables_info_bk-x_from_1_to_3.json".into(),
            serde_json::to_vec(&serde_json::json!({ "perTableStatus": tables })).unwrap(),
        )
    }

    #[test]
    fn skipped_and_failed_tables_are_named_with_rdss_reason() {
        let files = [info(serde_json::json!([
            {"target": "shop.public.orders", "status": "COMPLETE", "sizeGB": 1.5,
             "tableStatistics": {"extractionStartTime": "2026-11-21T03:00:00Z"}},
            {"target": "shop.public.Weird Name", "status": "SKIPPED",
             "warningMessage": "The table has a column name with special characters"},
            {"target": "shop.public.blobs", "status": "FAILED", "failureCause": "row too large"},
            {"target": "shop.public.notes", "status": "SKIPPED"}
        ]))];
        let c = check(&files, true);
        assert_eq!(c.exported, 1);
        assert_eq!(
            c.skipped,
            [
                Missing {
                    table: "shop.public.Weird Name".into(),
                    reason: "The table has a column name with special characters".into()
                },
                Missing {
                    table: "shop.public.notes".into(),
                    reason: "status SKIPPED".into()
                }
            ]
        );
        assert_eq!(c.failed[0].reason, "row too large");
        assert!(c.is_incomplete());
    }

    #[test]
    fn several_info_files_add_up_and_an_unreadable_one_is_named() {
        let a = info(serde_json::json!([{"target": "a.t1", "status": "COMPLETE"}]));
        let b = info(serde_json::json!([{"target": "a.t2", "status": "COMPLETE"}]));
        let bad = (
            "x/export_tables_info_bk-x_from_3_to_3.json".to_owned(),
            b"{".to_vec(),
        );
        let c = check(&[a, b, bad], true);
        assert_eq!(c.exported, 2);
        assert_eq!(c.unreadable.len(), 1);
        assert!(!c.is_incomplete());
    }

    #[test]
    fn a_completed_export_without_table_data_is_incomplete() {
        let c = check(&[info(serde_json::json!([]))], false);
        assert!(c.is_incomplete() && c.exported == 0);
    }

    #[test]
    fn the_first_ten_are_named_then_counted() {
        let many: Vec<Missing> = (0..13)
            .map(|i| Missing {
                table: format!("db.t{i}"),
                reason: "LOB too large".into(),
            })
            .collect();
        let lines = named(&many);
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[10], "and 3 more");
    }

    #[test]
    fn only_table_info_files_are_read() {
        assert!(is_tables_info(
            "p/bk-x/export_tables_info_bk-x_from_1_to_96.json"
        ));
        assert!(!is_tables_info("p/bk-x/export_info_bk-x.json"));
        assert!(!is_tables_info(
            "p/bk-x/shop/public.orders/1/part-0.parquet"
        ));
    }
}
