use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(
        |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(serde_json::json!({ "hello": event.payload }))
        },
    ))
    .await
}
