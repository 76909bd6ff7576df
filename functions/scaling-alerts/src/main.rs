use bridgekeeper::failures::{SqsFailureSink, settle};
use bridgekeeper::idempotency::DynamoStore;
use bridgekeeper::runtime;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use scaling_alerts::aws::{AutoScalingApi, Ec2Api};
use scaling_alerts::{Config, FUNCTION, handler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let env = bridgekeeper::config::Env::from_process();
    let config = Config::from_env(&env)?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    // Unpublished alerts go back to SQS (batch item failures), whose redelivery is the retry.
    let failed = SqsFailureSink::from_env(&env, &sdk)?;
    let accounts = bridgekeeper::accounts::Accounts::from_env(&env, &sdk, FUNCTION)?;
    let ports = handler::Ports {
        asg: AutoScalingApi::new(accounts.clone()),
        ec2: Ec2Api::new(accounts),
        notifiers: config.notifiers(aws_sdk_sns::Client::new(&sdk)),
        store: DynamoStore::from_env(&env, &sdk, FUNCTION)?,
    };
    let (config, ports, failed) = (&config, &ports, &failed);
    bridgekeeper::serve!(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let (payload, deadline) = (event.payload.clone(), runtime::deadline(&event.context));
            let outcome = match handler::handle_once(
                payload,
                deadline,
                &event.context.request_id,
                config,
                ports,
            )
            .await
            {
                Ok(response) => Ok(handler::record_rejected(response, failed).await),
                Err(e) => Err(e),
            };
            settle(FUNCTION, outcome, &event.payload, failed).await
        },
    ))
    .await
}
