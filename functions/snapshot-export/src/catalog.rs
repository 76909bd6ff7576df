//! Pure: the Glue Data Catalog entries that make a completed export queryable from Athena, read
//! off RDS's own table list (no crawler: `export_tables_info_*.json` names each table, its
//! folder and its columns with the Parquet types RDS wrote).
//!
//! One database per source (`<GLUE_DATABASE_PREFIX><source>`), one table per exported table,
//! partitioned by `export_date`: each export adds a partition at its own folder, so a table
//! holds every night's copy and a query picks the night.

use serde::Serialize;

use crate::verify::TableStatus;

/// A Glue table and the partition one export adds to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogTable {
    pub name: String,
    /// `(name, Hive type)`.
    pub columns: Vec<(String, String)>,
    /// The table's root: the source's folder, above every night's.
    pub location: String,
    /// `export_date` of this export (`YYYY-MM-DD`).
    pub partition: String,
    /// Where this export wrote the table.
    pub partition_location: String,
}

/// Glue names: lower case letters, digits and underscores (Athena reads nothing else), at most
/// 255 characters.
pub fn glue_name(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(255);
    out
}

/// The folder RDS writes a table to, below the export's: `<database>/<schema>.<table>` for
/// `database.schema.table` (PostgreSQL), `<database>/<database>.<table>` for `database.table`
/// (MySQL).
pub fn table_folder(target: &str) -> Option<String> {
    let (database, rest) = target.split_once('.')?;
    Some(if rest.contains('.') {
        format!("{database}/{rest}")
    } else {
        format!("{database}/{target}")
    })
}

/// RDS's `expectedExportedType` (the Parquet type it wrote) as the Hive type Athena reads.
pub fn hive_type(exported: &str) -> String {
    let t = exported.trim().to_ascii_lowercase();
    match t.as_str() {
        "int64" | "bigint" => "bigint".into(),
        "int32" | "int" | "integer" => "int".into(),
        "int16" | "smallint" => "smallint".into(),
        "boolean" | "bool" => "boolean".into(),
        "double" => "double".into(),
        "float" => "float".into(),
        "date" => "date".into(),
        _ if t.starts_with("decimal") => t.replace(' ', ""),
        _ if t.starts_with("int96") || t.contains("timestamp") => "timestamp".into(),
        _ if t.starts_with("binary") && !t.contains("utf8") => "binary".into(),
        _ => "string".into(),
    }
}

fn columns(table: &TableStatus) -> Vec<(String, String)> {
    let mappings = table
        .schema
        .as_ref()
        .and_then(|s| s.get("originalTypeMappings"))
        .and_then(|m| m.as_array());
    mappings
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let name = m.get("columnName")?.as_str()?;
            let t = m.get("expectedExportedType").and_then(|t| t.as_str());
            Some((glue_name(name), hive_type(t.unwrap_or("string"))))
        })
        .collect()
}

/// The catalog entries for one completed export: every table it exported whose columns RDS
/// listed. `source_root` is `s3://<bucket>/<prefix>/<source>/`, `export_folder` the export's
/// own (`…/<date>/<task id>/`).
pub fn tables(
    exported: &[TableStatus],
    source_root: &str,
    export_folder: &str,
    export_date: &str,
) -> Vec<CatalogTable> {
    exported
        .iter()
        .filter(|t| t.status.eq_ignore_ascii_case("COMPLETE"))
        .filter_map(|t| {
            let folder = table_folder(&t.target)?;
            let columns = columns(t);
            (!columns.is_empty()).then(|| CatalogTable {
                name: glue_name(t.target.split_once('.').map_or(&t.target, |(_, rest)| rest)),
                columns,
                location: source_root.to_owned(),
                partition: export_date.to_owned(),
                partition_location: format!("{export_folder}{folder}/"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(target: &str, cols: serde_json::Value) -> TableStatus {
        serde_json::from_value(serde_json::json!({
            "target": target, "status": "COMPLETE",
            "schemaMetadata": {"originalTypeMappings": cols}
        }))
        .unwrap()
    }

    #[test]
    fn each_exported_table_gets_its_columns_and_this_exports_folder() {
        let t = status(
            "shop.public.Orders",
            serde_json::json!([
                {"columnName": "id", "originalType": "bigint", "expectedExportedType": "int64"},
                {"columnName": "Total", "originalType": "numeric", "expectedExportedType": "decimal(10, 2)"},
                {"columnName": "note", "originalType": "text", "expectedExportedType": "binary (UTF8)"},
                {"columnName": "at", "originalType": "timestamp", "expectedExportedType": "int96"}
            ]),
        );
        let out = tables(
            &[t],
            "s3://exports/rds-exports/shop-db/",
            "s3://exports/rds-exports/shop-db/2026-11-21/bk-x/",
            "2026-11-21",
        );
        assert_eq!(out[0].name, "public_orders");
        assert_eq!(
            out[0].columns,
            [
                ("id".to_owned(), "bigint".to_owned()),
                ("total".to_owned(), "decimal(10,2)".to_owned()),
                ("note".to_owned(), "string".to_owned()),
                ("at".to_owned(), "timestamp".to_owned()),
            ]
        );
        assert_eq!(
            out[0].partition_location,
            "s3://exports/rds-exports/shop-db/2026-11-21/bk-x/shop/public.Orders/"
        );
    }

    #[test]
    fn mysql_tables_live_in_their_databases_folder_under_their_full_name() {
        assert_eq!(table_folder("sales.orders").unwrap(), "sales/sales.orders");
        assert_eq!(table_folder("db.public.t").unwrap(), "db/public.t");
        assert_eq!(table_folder("nodot"), None);
    }

    #[test]
    fn skipped_tables_and_tables_without_columns_are_not_catalogued() {
        let mut skipped = status("a.b.c", serde_json::json!([{"columnName": "x"}]));
        skipped.status = "SKIPPED".into();
        let bare = status("a.b.d", serde_json::json!([]));
        assert!(tables(&[skipped, bare], "s3://b/", "s3://b/x/", "2026-11-21").is_empty());
    }
}
