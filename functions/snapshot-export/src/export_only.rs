//! Pure: which databases, schemas or tables each source exports (`StartExportTask`'s
//! `ExportOnly`). `EXPORT_ONLY` entries are `database[.schema[.table]]` for every source, or
//! `<source>:database[.schema[.table]]` for one; a source with entries of its own takes only
//! those. RDS exports part of a database only when every name in the entry is Latin letters,
//! digits, `$` and `_` ("Considerations for DB cluster exports"); anything else is refused when
//! the function starts, by name, rather than failing every night at StartExportTask.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportOnly {
    all: Vec<String>,
    by_source: BTreeMap<String, Vec<String>>,
}

fn valid_name(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '$' || c == '_')
}

impl ExportOnly {
    /// The entries of `EXPORT_ONLY`, or the first that is not one, with why.
    pub fn parse(entries: &[String]) -> Result<ExportOnly, String> {
        let mut out = ExportOnly::default();
        for entry in entries {
            let (source, what) = match entry.split_once(':') {
                Some((source, what)) => (Some(source.trim()), what.trim()),
                None => (None, entry.trim()),
            };
            let parts: Vec<&str> = what.split('.').collect();
            if parts.len() > 3 || !parts.iter().all(|p| valid_name(p)) {
                return Err(format!(
                    "{entry:?}: expected database, database.schema or database.schema.table, each \
                     of letters, digits, $ and _ (what RDS exports in part)"
                ));
            }
            match source {
                Some("") => return Err(format!("{entry:?}: no source before ':'")),
                Some(source) => out
                    .by_source
                    .entry(source.to_owned())
                    .or_default()
                    .push(what.to_owned()),
                None => out.all.push(what.to_owned()),
            }
        }
        Ok(out)
    }

    /// What `source` exports: its own entries, else the ones for every source; empty: all.
    pub fn for_source(&self, source: &str) -> Vec<String> {
        self.by_source
            .get(source)
            .cloned()
            .unwrap_or_else(|| self.all.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_source_with_entries_of_its_own_takes_only_those() {
        let only = ExportOnly::parse(&list(&[
            "shop",
            "ledger-db:ledger.public.entries",
            "ledger-db:ledger.audit",
        ]))
        .unwrap();
        assert_eq!(
            only.for_source("ledger-db"),
            ["ledger.public.entries", "ledger.audit"]
        );
        assert_eq!(only.for_source("shop-db"), ["shop"]);
        assert!(ExportOnly::parse(&[]).unwrap().for_source("x").is_empty());
    }

    #[test]
    fn names_rds_cannot_export_in_part_are_refused_by_name() {
        for bad in [
            "shop.public.order-lines",
            "a.b.c.d",
            ":shop",
            "shop..t",
            "shop.my table",
        ] {
            let err = ExportOnly::parse(&list(&[bad])).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        assert!(ExportOnly::parse(&list(&["$tmp.public.t_1"])).is_ok());
    }
}
