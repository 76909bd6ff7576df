//! What every renderer shares: what Auto Scaling says about a group, the message attributes of
//! an alert, and the number and plural wording.

use std::collections::HashMap;

use bridgekeeper::notify::Notification;

/// What DescribeAutoScalingGroups says about a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupInfo {
    pub cluster: Option<String>,
    pub nodegroup: Option<String>,
    pub desired: Option<i32>,
    pub min: Option<i32>,
    pub max: Option<i32>,
    /// Instance id → instance type, for the instances still in the group.
    pub instance_types: HashMap<String, String>,
}

pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{:.2}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn attributes(
    n: Notification,
    source: &str,
    group: Option<&str>,
    info: Option<&GroupInfo>,
) -> Notification {
    let n = n.attribute("source", source);
    let n = match group {
        Some(g) => n.attribute("group", g),
        None => n,
    };
    match info.and_then(|i| i.cluster.clone()) {
        Some(c) => n.attribute("cluster", c),
        None => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_without_noise() {
        assert_eq!(fmt_number(80.0), "80");
        assert_eq!(fmt_number(93.456), "93.46");
        assert_eq!(fmt_number(0.5), "0.5");
    }
}
