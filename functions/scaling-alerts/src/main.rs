// The batch pipeline nests deeply in the handler future's type.
#![recursion_limit = "256"]

use bridgekeeper::wiring::Wiring;
use scaling_alerts::aws::{AutoScalingApi, Ec2Api, EksApi};
use scaling_alerts::kube::KubeClusterEvents;
use scaling_alerts::{Config, FUNCTION, handler, pipeline};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let w = Wiring::init(FUNCTION).await?;
    let config = Config::from_env(&w.env)?;
    // Unpublished alerts go back to SQS (batch item failures), whose redelivery is the retry;
    // each record's event is claimed once by the handler itself.
    let ports = pipeline::Ports {
        asg: AutoScalingApi::new(w.accounts.clone()),
        ec2: Ec2Api::new(w.accounts.clone()),
        eks: EksApi::new(w.accounts.clone(), &w.sdk, config.follow_up_queue.clone()),
        notifiers: config.notifiers(aws_sdk_sns::Client::new(&w.sdk)),
        store: w.store.clone(),
    };
    let kube = KubeClusterEvents::new(&config.kube_clusters, &w.accounts);
    let (config, ports, failed, kube) = (&config, &ports, &w.failed, &kube);
    w.serve(|payload, deadline, request| async move {
        handler::handle(payload, deadline, &request, config, ports, failed, kube).await
    })
    .await
}
