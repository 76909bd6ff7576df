//! Integration-test harness: starts the local stand-ins (moto's server for AWS, kmock for
//! Kubernetes) from the repository's `.venv`, once per test binary, on free loopback ports.
//!
//! Each stand-in lives as long as the test process: its standard input is a pipe from us, and it
//! exits when that closes. Tests isolate themselves with [`unique`] names and their own
//! [`TestEnv::region`], since moto keeps state per account and region.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;

/// The command that installs the stand-ins, named in every "not found" failure.
pub const INSTALL_HINT: &str =
    "run `make setup` (or `make test`, which runs it) to install them into .venv";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A running stand-in.
pub struct StandIn {
    pub name: &'static str,
    pub url: String,
    // Held so the pipe stays open; dropping it (process exit) stops the stand-in.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

impl StandIn {
    fn start(name: &'static str) -> StandIn {
        let root = repo_root();
        let python = root.join(".venv/bin/python");
        let script = root.join("tests/standins/serve.py");
        assert!(
            python.exists(),
            "stand-in {name}: {} not found; {INSTALL_HINT}",
            python.display()
        );
        // Its log goes to a file: a pipe nobody reads fills up and stalls the server.
        let log_path =
            std::env::temp_dir().join(format!("bridgekeeper-{name}-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).expect("a log file in the temp dir");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "stand-in {name}: cannot start {}: {e}; {INSTALL_HINT}",
                    python.display()
                )
            });
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(url) = line.trim().strip_prefix("READY ").map(str::to_owned) else {
            let _ = child.kill();
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("stand-in {name} did not start ({INSTALL_HINT}):\n{line}{err}");
        };
        wait_until_listening(name, &url);
        StandIn {
            name,
            url,
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }
}

fn wait_until_listening(name: &str, url: &str) {
    let addr = url.trim_start_matches("http://");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "stand-in {name} at {url} did not answer within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// moto's server, started on first use.
pub fn moto() -> &'static StandIn {
    static MOTO: OnceLock<StandIn> = OnceLock::new();
    MOTO.get_or_init(|| StandIn::start("moto"))
}

/// The kmock Kubernetes emulator, started on first use.
pub fn kmock() -> &'static StandIn {
    static KMOCK: OnceLock<StandIn> = OnceLock::new();
    KMOCK.get_or_init(|| StandIn::start("kmock"))
}

/// `prefix-<pid>-<n>`: unique within this run and across concurrent test binaries.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// moto keeps state per region: regions handed out in turn give concurrent tests in one binary
/// separate RDS, SNS, SQS, ... state (Route53 and S3 names are global: use [`unique`]).
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "sa-east-1",
];

/// What one test needs to talk to the stand-ins.
pub struct TestEnv {
    pub region: String,
    pub sdk: SdkConfig,
}

impl TestEnv {
    /// An SDK config pointed at moto, with dummy credentials and a region of this test's own.
    pub async fn aws() -> TestEnv {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let region = REGIONS[NEXT.fetch_add(1, Ordering::Relaxed) % REGIONS.len()].to_owned();
        let sdk = sdk_config(&region).await;
        TestEnv { region, sdk }
    }

    /// A given region (moto's state there is shared with any other test using it).
    pub async fn in_region(region: &str) -> TestEnv {
        TestEnv {
            region: region.to_owned(),
            sdk: sdk_config(region).await,
        }
    }
}

pub async fn sdk_config(region: &str) -> SdkConfig {
    sdk_config_at(&moto().url, region).await
}

/// As [`sdk_config`], every call sent to `endpoint` (a [`Proxy`] in front of moto).
pub async fn sdk_config_at(endpoint: &str, region: &str) -> SdkConfig {
    bridgekeeper::aws::loader()
        .endpoint_url(endpoint)
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "bridgekeeper-tests",
        ))
        .load()
        .await
}

/// moto's default account: the hub in the two-account tests.
pub const HUB_ACCOUNT: &str = "123456789012";
/// A member account. moto keeps each account's state apart and reaches it by AssumeRole.
pub const MEMBER_ACCOUNT: &str = "222222222222";

/// Credentials that act in `account` on moto, to set up a member account's resources: what
/// AssumeRole there returns (moto does not check that the role exists; AWS would).
pub async fn acting_in(hub: &SdkConfig, account: &str) -> SdkConfig {
    let role = format!("arn:aws:iam::{account}:role/bridgekeeper-tests");
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("bridgekeeper-tests")
        .configure(hub)
        .build()
        .await;
    hub.to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// A hub function's accounts as the stack configures them: the hub's account id and the member
/// role name (`bridgekeeper-<function>`).
pub fn hub_accounts(hub: &SdkConfig, function: &str) -> bridgekeeper::accounts::Accounts {
    let role = format!("bridgekeeper-{function}");
    let env = bridgekeeper::config::Env::from_pairs([
        ("ACCOUNT_ID", HUB_ACCOUNT),
        ("MEMBER_ROLE_NAME", role.as_str()),
    ]);
    bridgekeeper::accounts::Accounts::from_env(&env, hub, function).expect("valid settings")
}

/// A body rewrite: (request line, response body) → the body the client gets.
type Rewrite = dyn Fn(&str, String) -> String + Send + Sync;

/// An HTTP/1.1 proxy on loopback in front of a stand-in, for what the stand-in cannot answer
/// (moto's EKS clusters have no reachable endpoint): each request is forwarded on a connection of
/// its own, its head kept for the test to read, and the response body passed through `rewrite`.
pub struct Proxy {
    pub url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub async fn start(
        upstream: &str,
        rewrite: impl Fn(&str, String) -> String + Send + Sync + 'static,
    ) -> anyhow::Result<Proxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let requests: Arc<Mutex<Vec<String>>> = Default::default();
        let rewrite: Arc<Rewrite> = Arc::new(rewrite);
        let kept = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, kept, rewrite) = (upstream.clone(), kept.clone(), rewrite.clone());
                tokio::spawn(async move {
                    let _ = forward(client, &upstream, &kept, rewrite.as_ref()).await;
                });
            }
        });
        Ok(Proxy { url, requests })
    }

    /// The heads of the requests forwarded so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 message: (head, body), a chunked body decoded.
async fn read_message(
    stream: &mut tokio::net::TcpStream,
    until_close: bool,
) -> anyhow::Result<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed before the head ended");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end..].to_vec();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        while body.len() < len {
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
    } else if until_close {
        stream.read_to_end(&mut body).await?;
    }
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16)?;
            if size == 0 {
                break;
            }
            plain.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[i + 2 + size + 2..];
        }
        body = plain;
    }
    Ok((head, body))
}

/// The head without the headers the proxy sets itself.
fn head_without(head: &str, drop: &[&str]) -> String {
    head.trim_end()
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_none_or(|(k, _)| !drop.iter().any(|d| k.trim().eq_ignore_ascii_case(d)))
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

async fn forward(
    mut client: tokio::net::TcpStream,
    upstream: &str,
    kept: &Mutex<Vec<String>>,
    rewrite: &Rewrite,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let (head, body) = read_message(&mut client, false).await?;
    kept.lock().unwrap().push(head.clone());
    let mut server = tokio::net::TcpStream::connect(upstream).await?;
    let sent = head_without(
        &head,
        &["connection", "content-length", "transfer-encoding"],
    );
    let length = format!("content-length: {}\r\n", body.len());
    server
        .write_all(format!("{sent}\r\nconnection: close\r\n{length}\r\n").as_bytes())
        .await?;
    server.write_all(&body).await?;
    let (answer, answer_body) = read_message(&mut server, true).await?;
    let request_line = head.lines().next().unwrap_or_default();
    let answer_body = rewrite(
        request_line,
        String::from_utf8_lossy(&answer_body).into_owned(),
    );
    let kept_head = head_without(
        &answer,
        &["connection", "content-length", "transfer-encoding"],
    );
    client
        .write_all(
            format!(
                "{kept_head}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                answer_body.len()
            )
            .as_bytes(),
        )
        .await?;
    client.write_all(answer_body.as_bytes()).await?;
    client.shutdown().await?;
    Ok(())
}

/// An EKS cluster in moto, in the account `sdk` acts in (moto's has no usable endpoint or CA).
pub async fn eks_cluster(sdk: &SdkConfig, account: &str, name: &str) -> anyhow::Result<()> {
    aws_sdk_eks::Client::new(sdk)
        .create_cluster()
        .name(name)
        .role_arn(format!("arn:aws:iam::{account}:role/eks"))
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-1")
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

/// An SNS topic with an SQS queue subscribed to it, to read published messages back (moto's
/// `/moto-api/data.json` fails once RDS objects exist, so this is the way that always works).
pub struct Inbox {
    pub topic_arn: String,
    pub queue_url: String,
    sqs: aws_sdk_sqs::Client,
}

/// One SNS message as the queue received it (raw delivery off: the SNS envelope).
#[derive(Debug, Clone, PartialEq)]
pub struct SnsMessage {
    pub id: String,
    pub subject: Option<String>,
    pub body: String,
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Inbox {
    pub async fn create(sdk: &SdkConfig) -> anyhow::Result<Inbox> {
        Inbox::filtered(sdk, None).await
    }

    /// An inbox whose subscription has an SNS filter policy (on message attributes).
    pub async fn filtered(sdk: &SdkConfig, filter_policy: Option<&str>) -> anyhow::Result<Inbox> {
        use anyhow::Context;
        use aws_sdk_sqs::types::QueueAttributeName;
        let sns = aws_sdk_sns::Client::new(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let topic_arn = sns
            .create_topic()
            .name(unique("alerts"))
            .send()
            .await?
            .topic_arn
            .context("topic arn")?;
        let queue_url = sqs
            .create_queue()
            .queue_name(unique("inbox"))
            .send()
            .await?
            .queue_url
            .context("queue url")?;
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?;
        let queue_arn = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .context("queue arn")?
            .clone();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .set_attributes(filter_policy.map(|p| {
                std::collections::HashMap::from([("FilterPolicy".to_owned(), p.to_owned())])
            }))
            .send()
            .await?;
        Ok(Inbox {
            topic_arn,
            queue_url,
            sqs,
        })
    }

    /// Everything published so far (and not yet received), oldest first.
    pub async fn receive(&self) -> anyhow::Result<Vec<SnsMessage>> {
        use anyhow::Context;
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await?;
            if out.messages().is_empty() {
                return Ok(all);
            }
            for m in out.messages() {
                let v: serde_json::Value = serde_json::from_str(m.body().context("body")?)?;
                let attributes = v["MessageAttributes"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v["Value"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                all.push(SnsMessage {
                    id: v["MessageId"].as_str().unwrap_or_default().to_owned(),
                    subject: v["Subject"].as_str().map(str::to_owned),
                    body: v["Message"].as_str().unwrap_or_default().to_owned(),
                    attributes,
                });
                if let Some(h) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(h)
                        .send()
                        .await?;
                }
            }
        }
    }
}

/// A node-group-like ASG with `desired` instances; returns their ids.
pub async fn node_group(
    sdk: &SdkConfig,
    asg: &str,
    cluster: &str,
    nodegroup: &str,
    desired: i32,
) -> anyhow::Result<Vec<String>> {
    let client = aws_sdk_autoscaling::Client::new(sdk);
    let lc = unique("lc");
    client
        .create_launch_configuration()
        .launch_configuration_name(&lc)
        .image_id("ami-12c6146b")
        .instance_type("m6i.large")
        .send()
        .await?;
    let tag = |k: &str, v: &str| {
        aws_sdk_autoscaling::types::Tag::builder()
            .resource_id(asg)
            .resource_type("auto-scaling-group")
            .key(k)
            .value(v)
            .propagate_at_launch(true)
            .build()
    };
    client
        .create_auto_scaling_group()
        .auto_scaling_group_name(asg)
        .launch_configuration_name(&lc)
        .min_size(1)
        .max_size(10)
        .desired_capacity(desired)
        .availability_zones(format!(
            "{}a",
            sdk.region().map(|r| r.to_string()).unwrap_or_default()
        ))
        .tags(tag("eks:cluster-name", cluster))
        .tags(tag("eks:nodegroup-name", nodegroup))
        .send()
        .await?;
    let out = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(asg)
        .send()
        .await?;
    let group = out
        .auto_scaling_groups()
        .first()
        .ok_or_else(|| anyhow::anyhow!("group {asg} not found"))?;
    Ok(group
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect())
}

/// An EC2 instance in moto with `tags`, as Karpenter (or anyone) launches it; returns its id.
pub async fn instance(
    sdk: &SdkConfig,
    instance_type: &str,
    spot: bool,
    tags: &[(&str, &str)],
) -> anyhow::Result<String> {
    use aws_sdk_ec2::types::{
        InstanceMarketOptionsRequest, InstanceType, MarketType, Placement, ResourceType, Tag,
        TagSpecification,
    };
    let zone = format!(
        "{}a",
        sdk.region().map(|r| r.to_string()).unwrap_or_default()
    );
    let spec = tags
        .iter()
        .fold(TagSpecification::builder(), |b, (k, v)| {
            b.tags(Tag::builder().key(*k).value(*v).build())
        })
        .resource_type(ResourceType::Instance)
        .build();
    let mut run = aws_sdk_ec2::Client::new(sdk)
        .run_instances()
        .image_id("ami-12c6146b")
        .instance_type(InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        // moto places an instance without a placement in us-east-1a, whatever the region.
        .placement(Placement::builder().availability_zone(zone).build())
        .tag_specifications(spec);
    if spot {
        run = run.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .build(),
        );
    }
    let out = run.send().await?;
    out.instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("RunInstances returned no instance"))
}

/// An ELBv2 load balancer in moto (created through `tests/standins/aws_seed.py`, since it needs
/// EC2 subnets); returns (DNS name, canonical hosted zone id).
pub fn load_balancer(
    region: &str,
    name: &str,
    dualstack: bool,
) -> anyhow::Result<(String, String)> {
    let root = repo_root();
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/standins/aws_seed.py"))
        .args([
            "load-balancer",
            &moto().url,
            region,
            name,
            if dualstack { "dualstack" } else { "ipv4" },
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "aws_seed.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        v["dns_name"].as_str().unwrap_or_default().to_owned(),
        v["canonical_zone_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ))
}

/// A failed-invocations queue on moto, as the stack's: what functions record there, read back.
pub struct FailedQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

impl FailedQueue {
    pub async fn create(sdk: &SdkConfig) -> anyhow::Result<FailedQueue> {
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let url = sqs
            .create_queue()
            .queue_name(unique("failed-invocations"))
            .send()
            .await?
            .queue_url
            .ok_or_else(|| anyhow::anyhow!("no queue url"))?;
        Ok(FailedQueue { sqs, url })
    }

    /// The sink a function would write to.
    pub fn sink(&self) -> bridgekeeper::failures::SqsFailureSink {
        bridgekeeper::failures::SqsFailureSink::new(self.sqs.clone(), &self.url)
    }

    /// Every record now in the queue (moto returns them at once), parsed.
    pub async fn records(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let got = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .send()
            .await?;
        got.messages
            .unwrap_or_default()
            .iter()
            .map(|m| Ok(serde_json::from_str(m.body().unwrap_or_default())?))
            .collect()
    }
}

/// A table shaped like the stack's `IdempotencyTable` (partition key `id`), in moto.
/// A function's idempotency store on a table of its own in moto, with the stack's default TTL.
pub async fn idempotency_store(
    sdk: &SdkConfig,
    function: &str,
) -> anyhow::Result<bridgekeeper::idempotency::DynamoStore> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let table = idempotency_table(&client).await?;
    Ok(bridgekeeper::idempotency::DynamoStore::new(
        client,
        table,
        function,
        bridgekeeper::idempotency::DEFAULT_TTL,
    ))
}

pub async fn idempotency_table(client: &aws_sdk_dynamodb::Client) -> anyhow::Result<String> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let name = unique("bridgekeeper-idempotency");
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await?;
    Ok(name)
}

/// Pushes an image to moto's ECR (`eu-west-1`, the events' region) under `tag`, creating the
/// repository if needed; `layer` makes the image distinct. Returns the digest ECR gave it (moto
/// derives it from the layers, not from the manifest's bytes as ECR does).
pub async fn ecr_push(
    sdk: &SdkConfig,
    repository: &str,
    tag: &str,
    layer: u8,
) -> anyhow::Result<String> {
    let conf = aws_sdk_ecr::config::Builder::from(sdk)
        .region(Region::new("eu-west-1"))
        .build();
    let ecr = aws_sdk_ecr::Client::from_conf(conf);
    if ecr
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await
        .is_err()
    {
        ecr.create_repository()
            .repository_name(repository)
            .send()
            .await?;
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                   "digest": format!("sha256:{}", "c".repeat(64))},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
                    "digest": format!("sha256:{:02x}{}", layer, "0".repeat(62))}]
    });
    let out = ecr
        .put_image()
        .repository_name(repository)
        .image_tag(tag)
        .image_manifest(manifest.to_string())
        .send()
        .await?;
    out.image()
        .and_then(|i| i.image_id())
        .and_then(|i| i.image_digest())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("PutImage returned no digest"))
}

/// What RDS writes for an export it completed, into moto's S3 (which runs no export): at the top
/// of `<prefix>/<task id>/` the totals and the table list (`tables`: RDS's `perTableStatus`), and
/// a Parquet file under each exported table's folder. Creates the bucket if needed.
pub async fn write_export(
    sdk: &SdkConfig,
    bucket: &str,
    folder: &str,
    tables: serde_json::Value,
) -> anyhow::Result<()> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    let mut create = s3.create_bucket().bucket(bucket);
    // Outside us-east-1 S3 wants the bucket's region said.
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    region.as_str(),
                ))
                .build(),
        );
    }
    if let Err(e) = create.send().await {
        let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
            .unwrap_or_default()
            .to_owned();
        anyhow::ensure!(
            code.starts_with("BucketAlready"),
            "create bucket {bucket}: {e:?}"
        );
    }
    let put = |key: String, body: Vec<u8>| {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(body))
            .send()
    };
    let task = folder
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("task");
    put(
        format!("{folder}export_info_{task}.json"),
        serde_json::to_vec(
            &serde_json::json!({"exportTaskIdentifier": task, "status": "COMPLETE"}),
        )?,
    )
    .await?;
    put(
        format!(
            "{folder}export_tables_info_{task}_from_1_to_{}.json",
            tables.as_array().map_or(0, Vec::len)
        ),
        serde_json::to_vec(&serde_json::json!({ "perTableStatus": tables }))?,
    )
    .await?;
    for t in tables.as_array().into_iter().flatten() {
        let target = t["target"].as_str().unwrap_or_default();
        if t["status"] != "COMPLETE" {
            continue;
        }
        // Where RDS writes the table, as the catalog reads it back.
        if let Some(dir) = snapshot_export::catalog::table_folder(target) {
            put(
                format!("{folder}{dir}/1/part-00000-demo.gz.parquet"),
                b"PAR1".to_vec(),
            )
            .await?;
        }
    }
    Ok(())
}
