//! Cutting text to a byte budget (SNS, SQS and CloudFormation count UTF-8 bytes) on a character
//! boundary, so a cut never splits a character or panics.

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` whole, or cut to at most `max` bytes with a note of how many were dropped.
pub fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let kept = prefix(text, max.saturating_sub(64));
    format!("{kept}… ({} more bytes)", text.len() - kept.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fit_the_budget_on_character_boundaries() {
        for unit in ["a", "é", "€", "🚀"] {
            let long = unit.repeat(5000);
            for max in [100, 101, 102, 103, 4096] {
                let p = prefix(&long, max);
                assert!(p.len() <= max && long.starts_with(p));
                let c = cap(&long, max);
                assert!(c.len() <= max, "{unit} {max}: {}", c.len());
                assert!(c.ends_with("more bytes)"));
            }
        }
        assert_eq!(cap("short", 10), "short");
    }
}
