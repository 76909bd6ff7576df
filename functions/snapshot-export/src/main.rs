// The fleet over accounts nests deeply in the handler future's type.
#![recursion_limit = "256"]

use bridgekeeper::wiring::Wiring;
use snapshot_export::completion::Exports;
use snapshot_export::files::S3Files;
use snapshot_export::glue::GlueCatalog;
use snapshot_export::{Config, FUNCTION, aws::RdsApi, handler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let w = Wiring::init(FUNCTION).await?;
    let config = Config::from_env(&w.env)?;
    let rds = RdsApi::new(aws_sdk_rds::Client::new(&w.sdk));
    let members = handler::MemberRds(w.accounts.clone());
    let notifier = w.queued(config.topics.sns(aws_sdk_sns::Client::new(&w.sdk)));
    let files = S3Files::from_conf(&w.sdk);
    let catalog = GlueCatalog::new(aws_sdk_glue::Client::new(&w.sdk));
    let exports = Exports {
        files: &files,
        catalog: &catalog,
    };
    let (config, rds, members, notifier, store) = (&config, &rds, &members, &notifier, &w.store);
    w.serve_once(|event, _, _| {
        handler::handle(event, config, rds, members, notifier, store, exports)
    })
    .await
}
