// kube nests deeply in the handler future's type.
#![recursion_limit = "256"]

use bridgekeeper::wiring::Wiring;
use dns_sync::{Config, FUNCTION, aws::AwsDns, handler, kube::KubeSources, report::State};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let w = Wiring::init(FUNCTION).await?;
    let config = Config::from_env(&w.env)?;
    let sources = KubeSources::new(&config.clusters, &w.accounts);
    let dns = AwsDns::across(
        &w.accounts,
        &config.zone_accounts,
        &config.load_balancer_scopes(),
    );
    let notifier = w.queued(config.topics.sns(aws_sdk_sns::Client::new(&w.sdk)));
    let state = State::new(&w.store);
    let (config, sources, dns, notifier, state) = (&config, &sources, &dns, &notifier, &state);
    w.serve_once(|event, deadline, _| {
        handler::handle(event, deadline, config, sources, dns, notifier, state)
    })
    .await
}
