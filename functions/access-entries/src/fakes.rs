//! The crate's test doubles, for any of its tests: an EKS that records what it was asked (and
//! fails or hangs where told), and a CloudFormation answer endpoint that keeps the answers.

use std::sync::Mutex;

use bridgekeeper::AwsError;

use crate::aws::{AccessEntries, Outcome};
use crate::respond::{Respond, RespondError, Response};

#[derive(Default)]
pub struct FakeEks {
    pub calls: Mutex<Vec<String>>,
    pub fail_on: Option<&'static str>,
    pub hang: bool,
}

impl AccessEntries for FakeEks {
    async fn ensure(&self, c: &str, _: &str, g: &[String]) -> Result<Outcome, AwsError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure {c} {}", g.join("+")));
        if self.fail_on == Some(c) {
            return Err(AwsError::fake(
                "eks:CreateAccessEntry",
                "ResourceNotFoundException",
                404,
                &format!("No cluster found for name: {c}."),
            ));
        }
        Ok(Outcome::Created)
    }
    async fn remove(&self, c: &str, _: &str) -> Result<Outcome, AwsError> {
        self.calls.lock().unwrap().push(format!("remove {c}"));
        Ok(Outcome::Deleted)
    }
}

#[derive(Default)]
pub struct Answers {
    pub sent: Mutex<Vec<(String, Response)>>,
    pub broken: bool,
}

impl Respond for Answers {
    async fn respond(&self, url: &str, r: &Response) -> Result<(), RespondError> {
        if self.broken {
            return Err(RespondError("connection refused".into()));
        }
        self.sent.lock().unwrap().push((url.to_owned(), r.clone()));
        Ok(())
    }
}
