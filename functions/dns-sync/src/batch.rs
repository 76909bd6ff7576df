//! A zone's plan as Route53 calls: hosts packed into as few change batches as its limits allow
//! (1,000 values, 32,000 characters, an UPSERT counting twice), a host never split from its
//! ownership record.

use crate::domain::HostChanges;
use crate::records::{DnsChange, MAX_BATCH_CHARS, MAX_BATCH_VALUES};

/// Packs hosts into as few batches as Route53's limits allow, never splitting a host.
pub fn batches(hosts: Vec<HostChanges>) -> Vec<Vec<HostChanges>> {
    let mut out: Vec<Vec<HostChanges>> = Vec::new();
    let (mut values, mut chars) = (0, 0);
    for host in hosts.into_iter().filter(|h| !h.changes.is_empty()) {
        let (v, c) = host
            .changes
            .iter()
            .map(DnsChange::weight)
            .fold((0, 0), |a, w| (a.0 + w.0, a.1 + w.1));
        let fits = values + v <= MAX_BATCH_VALUES && chars + c <= MAX_BATCH_CHARS;
        match out.last_mut() {
            Some(batch) if fits => batch.push(host),
            _ => {
                out.push(vec![host]);
                (values, chars) = (0, 0);
            }
        }
        values += v;
        chars += c;
    }
    out
}
