use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use scaling_alerts::{Config, aws::AutoScalingApi, handler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    bridgekeeper::telemetry::init();
    let config = Config::from_env(&bridgekeeper::config::Env::from_process())?;
    let sdk = bridgekeeper::aws::sdk_config().await;
    let asg = AutoScalingApi::new(aws_sdk_autoscaling::Client::new(&sdk));
    let notifiers = config.notifiers(aws_sdk_sns::Client::new(&sdk));
    let (config, asg, notifiers) = (&config, &asg, &notifiers);
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handler::handle_payload(event.payload, config, asg, notifiers).await
        },
    ))
    .await
}
