//! A completed export, checked table by table (`verify`) and, when `GLUE_DATABASE_PREFIX` is
//! set, registered in the Glue Data Catalog (`catalog`). Neither check nor catalog can turn a
//! completion into a failed invocation: what could not be read is said in the report.

use serde::Serialize;
use tracing::{info, warn};

use crate::catalog::{self, glue_name};
use crate::config::Config;
use crate::domain::ExportTask;
use crate::files::ExportFiles;
use crate::glue::Catalog;
use crate::verify::{self, TableCheck};

/// What the export's own files and the catalog came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Completion {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<TableCheck>,
    /// Why the export's files could not be checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchecked: Option<String>,
    /// The Glue database its tables were registered in, and how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<(String, usize)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
}

/// The adapters a completion reads and writes through.
pub struct Exports<'a, F, C> {
    pub files: &'a F,
    pub catalog: &'a C,
}

// By hand: derived, they would ask F and C to be Copy too.
impl<F, C> Clone for Exports<'_, F, C> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F, C> Copy for Exports<'_, F, C> {}

/// `<prefix>/<source>/<date>` (`domain::export_prefix`): the date of the export's folder.
fn export_date(prefix: &str) -> Option<&str> {
    let date = prefix.trim_end_matches('/').rsplit('/').next()?;
    (date.len() == 10 && date.as_bytes()[4] == b'-').then_some(date)
}

pub async fn complete<F: ExportFiles, C: Catalog>(
    task: &ExportTask,
    source: &str,
    config: &Config,
    exports: Exports<'_, F, C>,
) -> Completion {
    let mut out = Completion::default();
    let (Some(bucket), Some(prefix)) = (task.s3_bucket.as_deref(), task.s3_prefix.as_deref())
    else {
        out.unchecked = Some("RDS did not say where the export was written".into());
        return out;
    };
    let prefix = prefix.trim_matches('/');
    let folder = format!("{prefix}/{}/", task.id);
    let listed = match exports.files.folder(bucket, &folder).await {
        Ok(f) => f,
        Err(e) => {
            warn!(error = %e, folder, "export folder not readable; the export is not checked");
            out.unchecked = Some(e.to_string());
            return out;
        }
    };
    let mut files = Vec::new();
    for key in listed.files.iter().filter(|k| verify::is_tables_info(k)) {
        match exports.files.read(bucket, key).await {
            Ok(bytes) => files.push((key.clone(), bytes)),
            Err(e) => {
                out.unchecked = Some(e.to_string());
                return out;
            }
        }
    }
    let check = verify::check(&files, !listed.folders.is_empty());
    info!(
        task = %task.id,
        exported = check.exported,
        skipped = check.skipped.len(),
        failed = check.failed.len(),
        has_data = check.has_data,
        "export checked"
    );
    let catalogued = config
        .glue_database_prefix
        .as_ref()
        .zip(export_date(prefix));
    if let (Some((db_prefix, date)), true) = (catalogued, check.has_data) {
        let database = glue_name(&format!("{db_prefix}{source}"));
        let root = prefix.rsplit_once('/').map_or(prefix, |(root, _)| root);
        let tables = catalog::tables(
            &check.tables,
            &format!("s3://{bucket}/{root}/"),
            &format!("s3://{bucket}/{folder}"),
            date,
        );
        out.catalog_error = register(&database, source, &tables, exports.catalog).await;
        if out.catalog_error.is_none() {
            out.catalog = Some((database, tables.len()));
        }
    }
    out.tables = Some(check);
    out
}

async fn register<C: Catalog>(
    database: &str,
    source: &str,
    tables: &[catalog::CatalogTable],
    glue: &C,
) -> Option<String> {
    let description = format!("Bridgekeeper's RDS exports of {source}");
    if let Err(e) = glue.database(database, &description).await {
        return Some(e.to_string());
    }
    for t in tables {
        if let Err(e) = glue.table(database, t).await {
            warn!(error = %e, table = %t.name, "not registered in the catalog");
            return Some(format!("table {}: {e}", t.name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_of_an_export_is_its_folders() {
        assert_eq!(
            export_date("rds-exports/shop-db/2026-11-21"),
            Some("2026-11-21")
        );
        assert_eq!(
            export_date("rds-exports/shop-db/2026-11-21/"),
            Some("2026-11-21")
        );
        assert_eq!(export_date("somewhere"), None);
    }
}
