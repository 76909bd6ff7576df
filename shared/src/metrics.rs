//! CloudWatch Embedded Metric Format: one JSON log line per flush, which CloudWatch Logs turns
//! into metrics in namespace `Bridgekeeper` with dimension `Function`. No PutMetricData call,
//! no extra permission, nothing lost if the process dies after the line is written.
//!
//! A small typed writer rather than the `metrics` + `metrics_cloudwatch_embedded` pair: that one
//! needs a process-global recorder, which handlers generic over their ports cannot assert on.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

pub const NAMESPACE: &str = "Bridgekeeper";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    Count,
    Milliseconds,
    Gigabytes,
}

/// Metric values collected during one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    function: String,
    values: BTreeMap<&'static str, (f64, Unit)>,
}

impl Metrics {
    pub fn new(function: impl Into<String>) -> Self {
        Metrics {
            function: function.into(),
            values: BTreeMap::new(),
        }
    }

    /// Adds to a count; a count of 0 is still emitted, so an alarm can see "nothing happened".
    pub fn count(&mut self, name: &'static str, n: u64) -> &mut Self {
        self.values.entry(name).or_insert((0.0, Unit::Count)).0 += n as f64;
        self
    }

    pub fn value(&mut self, name: &'static str, v: f64, unit: Unit) -> &mut Self {
        self.values.insert(name, (v, unit));
        self
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).map(|(v, _)| *v)
    }

    /// The EMF document for these values at `timestamp_ms`, or `None` when there are none.
    pub fn to_emf(&self, timestamp_ms: i64) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Definition<'a> {
            name: &'a str,
            unit: Unit,
        }
        let definitions: Vec<Definition> = self
            .values
            .iter()
            .map(|(name, (_, unit))| Definition { name, unit: *unit })
            .collect();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": definitions,
                }],
            },
            "Function": self.function,
        });
        for (name, (v, _)) in &self.values {
            doc[*name] = serde_json::json!(v);
        }
        Some(doc.to_string())
    }

    /// Writes the EMF line to `out` and clears the values.
    pub fn flush_to(&mut self, mut out: impl Write) -> std::io::Result<()> {
        if let Some(line) = self.to_emf(chrono::Utc::now().timestamp_millis()) {
            writeln!(out, "{line}")?;
        }
        self.values.clear();
        Ok(())
    }

    /// Writes to stdout, where Lambda sends it to CloudWatch Logs. (`println!`, so that test
    /// harnesses capture it like any other output.)
    pub fn flush(&mut self) {
        if let Some(line) = self.to_emf(chrono::Utc::now().timestamp_millis()) {
            println!("{line}");
        }
        self.values.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_one_emf_line_with_namespace_dimension_and_values() {
        let mut m = Metrics::new("snapshot-export");
        m.count("ExportsStarted", 2)
            .count("ExportsStarted", 1)
            .count("ExportsDeferred", 0);
        m.value("Duration", 12.5, Unit::Milliseconds);
        let mut out = Vec::new();
        m.flush_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Bridgekeeper");
        assert_eq!(directive["Dimensions"], serde_json::json!([["Function"]]));
        assert_eq!(doc["Function"], "snapshot-export");
        assert_eq!(doc["ExportsStarted"], 3.0);
        assert_eq!(doc["ExportsDeferred"], 0.0);
        let names: Vec<_> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["Name"].as_str().unwrap(), d["Unit"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            [
                ("Duration", "Milliseconds"),
                ("ExportsDeferred", "Count"),
                ("ExportsStarted", "Count")
            ]
        );
        assert!(doc["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }

    #[test]
    fn flush_clears_and_empty_flush_writes_nothing() {
        let mut m = Metrics::new("dns-sync");
        m.count("RecordsChanged", 1);
        m.flush_to(Vec::new()).unwrap();
        let mut out = Vec::new();
        m.flush_to(&mut out).unwrap();
        assert!(out.is_empty());
    }
}
