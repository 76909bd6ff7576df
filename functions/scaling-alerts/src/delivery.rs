//! Where alerts go: the topics, and which of them each alert goes to.

use bridgekeeper::notify::{Format, Severity};

/// Where alerts go: every alert to `all` as text and to `chat` as the chat JSON; error-severity
/// alerts also to `errors`.
pub struct Notifiers<N> {
    pub all: N,
    pub errors: Option<N>,
    pub chat: Option<N>,
}

impl<N> Notifiers<N> {
    /// (name, format, topic) for one notification; the name keys what a topic already got.
    pub fn targets(&self, severity: Severity) -> Vec<(&'static str, Format, &N)> {
        let mut t = vec![("alerts", Format::Text, &self.all)];
        if severity == Severity::Error {
            t.extend(self.errors.as_ref().map(|n| ("errors", Format::Text, n)));
        }
        t.extend(self.chat.as_ref().map(|n| ("chat", Format::Chat, n)));
        t
    }
}
