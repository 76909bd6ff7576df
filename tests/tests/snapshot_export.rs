//! snapshot-export against moto: real RDS instances and Aurora clusters (moto makes their
//! automated snapshots), real StartExportTask / DescribeExportTasks, SNS read back through SQS.

use anyhow::{Context, Result};
use aws_sdk_rds::types::Tag;
use bridgekeeper::config::Env;
use bridgekeeper_tests::{
    HUB_ACCOUNT, Inbox, MEMBER_ACCOUNT, TestEnv, acting_in, hub_accounts, repo_root, unique,
};
use snapshot_export::Config;
use snapshot_export::account::{Response, handle};
use snapshot_export::aws::RdsApi;
use snapshot_export::completion::Exports;
use snapshot_export::files::S3Files;
use snapshot_export::glue::GlueCatalog;
use snapshot_export::handler::{MemberRds, Outcome};

fn event(name: &str) -> serde_json::Value {
    let path = repo_root().join("events/snapshot-export").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn export_tag() -> Tag {
    Tag::builder()
        .key("bridgekeeper:export")
        .value("true")
        .build()
}

struct World {
    env: TestEnv,
    rds: aws_sdk_rds::Client,
    inbox: Inbox,
    bucket: String,
    /// What the export-age objective remembers (moto's DynamoDB is tested in idempotency.rs).
    memory: bridgekeeper::idempotency::testing::Memory,
}

impl World {
    async fn new() -> Result<World> {
        let env = TestEnv::aws().await;
        let inbox = Inbox::create(&env.sdk).await?;
        let rds = aws_sdk_rds::Client::new(&env.sdk);
        Ok(World {
            env,
            rds,
            inbox,
            bucket: unique("exports"),
            memory: Default::default(),
        })
    }

    async fn instance(&self, id: &str, tagged: bool) -> Result<()> {
        let mut req = self
            .rds
            .create_db_instance()
            .db_instance_identifier(id)
            .engine("postgres")
            .db_instance_class("db.t3.micro")
            .allocated_storage(20)
            .master_username("admin")
            .master_user_password("not-a-real-password");
        if tagged {
            req = req.tags(export_tag());
        }
        req.send().await?;
        Ok(())
    }

    async fn cluster(&self, id: &str) -> Result<()> {
        self.rds
            .create_db_cluster()
            .db_cluster_identifier(id)
            .engine("aurora-postgresql")
            .master_username("admin")
            .master_user_password("not-a-real-password")
            .tags(export_tag())
            .send()
            .await?;
        Ok(())
    }

    fn config(&self, extra: &[(&str, &str)]) -> Config {
        let kms = format!(
            "arn:aws:kms:{}:123456789012:key/0b1e5e7f-1111-2222-3333-444455556666",
            self.env.region
        );
        let mut vars = vec![
            ("ALERTS_TOPIC_ARN", self.inbox.topic_arn.as_str()),
            ("EXPORT_BUCKET", self.bucket.as_str()),
            (
                "EXPORT_ROLE_ARN",
                "arn:aws:iam::123456789012:role/bridgekeeper-export",
            ),
            ("EXPORT_KMS_KEY_ARN", kms.as_str()),
            ("ENVIRONMENT", "staging"),
        ];
        vars.extend_from_slice(extra);
        Config::from_env(&Env::from_pairs(vars)).unwrap()
    }

    async fn run(&self, config: &Config, event: serde_json::Value) -> Result<Response> {
        let notifier = config.topics.sns(aws_sdk_sns::Client::new(&self.env.sdk));
        let rds = RdsApi::new(self.rds.clone());
        let (files, catalog) = self.exports();
        let exports = Exports {
            files: &files,
            catalog: &catalog,
        };
        Ok(handle(event, config, &rds, &notifier, &self.memory, exports).await?)
    }

    /// What RDS would have written for the export at `s3_uri` (moto runs no export).
    async fn rds_wrote(&self, s3_uri: &str, tables: serde_json::Value) -> Result<()> {
        let folder = s3_uri
            .strip_prefix(&format!("s3://{}/", self.bucket))
            .context("the export's location is in the export bucket")?;
        bridgekeeper_tests::write_export(&self.env.sdk, &self.bucket, folder, tables).await
    }

    /// RDS's completion event for an export this test started.
    async fn completed(
        &self,
        export: &snapshot_export::domain::Export,
    ) -> Result<serde_json::Value> {
        let mut completed = event("export-completed.json");
        let task = self
            .tasks()
            .await?
            .into_iter()
            .find(|t| t.export_task_identifier() == Some(export.task_id.as_str()))
            .context("the export's task")?;
        completed["detail"]["SourceArn"] = task.source_arn().unwrap_or_default().into();
        completed["detail"]["SourceIdentifier"] = export.snapshot.clone().into();
        Ok(completed)
    }

    /// The real S3 and Glue adapters, on moto.
    fn exports(&self) -> (S3Files, GlueCatalog) {
        (
            S3Files::from_conf(&self.env.sdk),
            GlueCatalog::new(aws_sdk_glue::Client::new(&self.env.sdk)),
        )
    }

    async fn tasks(&self) -> Result<Vec<aws_sdk_rds::types::ExportTask>> {
        Ok(self
            .rds
            .describe_export_tasks()
            .send()
            .await?
            .export_tasks
            .unwrap_or_default())
    }
}

fn summary(r: Response) -> snapshot_export::report::RunSummary {
    match r {
        Response::Schedule(s) => s,
        other => panic!("expected a run summary, got {other:?}"),
    }
}

/// Hub and spoke on moto's two accounts: the member's tagged database is exported in the member
/// account (its export role, its own prefix), the hub's untagged one is not, and each account's
/// run is reported under its name.
#[tokio::test]
async fn a_member_accounts_tagged_database_is_exported_there_and_the_hubs_untagged_one_is_not()
-> Result<()> {
    let w = World::new().await?;
    let member_sdk = acting_in(&w.env.sdk, MEMBER_ACCOUNT).await;
    let member_rds = aws_sdk_rds::Client::new(&member_sdk);
    let (hub_db, member_db) = (unique("hub-db"), unique("orders"));
    w.instance(&hub_db, false).await?;
    member_rds
        .create_db_instance()
        .db_instance_identifier(&member_db)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-real-password")
        .tags(export_tag())
        .send()
        .await?;
    let member = format!("staging={MEMBER_ACCOUNT}");
    let config = w.config(&[
        ("ENVIRONMENT", "ops"),
        ("MEMBER_ACCOUNTS", member.as_str()),
        ("MEMBER_ROLE_NAME", "bridgekeeper-snapshot-export"),
        ("ACCOUNT_ID", HUB_ACCOUNT),
    ]);
    let notifier = config.topics.sns(aws_sdk_sns::Client::new(&w.env.sdk));
    let members = MemberRds(hub_accounts(&w.env.sdk, "snapshot-export"));
    let outcome = snapshot_export::handler::handle(
        event("schedule.json"),
        &config,
        &RdsApi::new(w.rds.clone()),
        &members,
        &notifier,
        &w.memory,
        Exports {
            files: &w.exports().0,
            catalog: &w.exports().1,
        },
    )
    .await?;
    let Outcome::Accounts { accounts } = outcome else {
        panic!("expected one run per account, got {outcome:?}");
    };
    let run = |name: &str| {
        let a = accounts.iter().find(|a| a.account == name).unwrap();
        assert!(a.error.is_none(), "{a:?}");
        match a.run.clone() {
            Some(Response::Schedule(s)) => s,
            other => panic!("{other:?}"),
        }
    };
    assert!(run("this account").started.is_empty());
    let staging = run("staging");
    assert_eq!(staging.started.len(), 1, "{staging:?}");
    assert_eq!(staging.started[0].source, member_db);

    let ours = |tasks: Vec<aws_sdk_rds::types::ExportTask>| -> Vec<_> {
        tasks
            .into_iter()
            .filter(|t| {
                let arn = t.source_arn().unwrap_or_default();
                arn.contains(&member_db) || arn.contains(&hub_db)
            })
            .collect()
    };
    let in_member = ours(
        member_rds
            .describe_export_tasks()
            .send()
            .await?
            .export_tasks
            .unwrap_or_default(),
    );
    assert_eq!(in_member.len(), 1, "{in_member:?}");
    let task = &in_member[0];
    assert!(
        task.source_arn()
            .unwrap()
            .contains(&format!(":{MEMBER_ACCOUNT}:"))
    );
    // The member stack's export role for this region (IAM names are per account).
    assert_eq!(
        task.iam_role_arn(),
        Some(
            format!(
                "arn:aws:iam::222222222222:role/bridgekeeper-rds-export-{}",
                w.env.region
            )
            .as_str()
        )
    );
    assert!(
        task.s3_prefix()
            .unwrap()
            .starts_with(&format!("rds-exports/{MEMBER_ACCOUNT}/{member_db}/")),
        "{task:?}"
    );
    assert_eq!(task.s3_bucket(), Some(w.bucket.as_str()));
    assert!(
        ours(w.tasks().await?).is_empty(),
        "nothing exported in the hub"
    );

    let messages = w.inbox.receive().await?;
    let subjects: Vec<_> = messages.iter().filter_map(|m| m.subject.clone()).collect();
    assert_eq!(
        subjects,
        ["[staging] RDS snapshot exports: 1 started"],
        "the hub had nothing to say"
    );
    assert_eq!(messages[0].attributes["account"], MEMBER_ACCOUNT);
    Ok(())
}

#[tokio::test]
async fn nightly_run_exports_each_tagged_source_once_even_when_delivered_three_times() -> Result<()>
{
    let w = World::new().await?;
    let (a, b, untagged, aurora) = (
        unique("shop-db"),
        unique("billing-db"),
        unique("scratch-db"),
        unique("orders"),
    );
    w.instance(&a, true).await?;
    w.instance(&b, true).await?;
    w.instance(&untagged, false).await?;
    w.cluster(&aurora).await?;
    let config = w.config(&[]);

    let first = summary(w.run(&config, event("schedule.json")).await?);
    let mut started: Vec<_> = first
        .started
        .iter()
        .map(|e| (e.source.clone(), e.kind))
        .collect();
    started.sort();
    let mut expected = vec![
        (a.clone(), bridgekeeper::events::SnapshotKind::Instance),
        (b.clone(), bridgekeeper::events::SnapshotKind::Instance),
        (aurora.clone(), bridgekeeper::events::SnapshotKind::Cluster),
    ];
    expected.sort();
    assert_eq!(started, expected);

    for _ in 0..2 {
        let again = summary(w.run(&config, event("schedule.json")).await?);
        assert!(again.started.is_empty(), "{again:?}");
        assert_eq!(again.already_exported.len(), 3);
    }

    let tasks = w.tasks().await?;
    assert_eq!(tasks.len(), 3, "one export task per snapshot: {tasks:?}");
    for t in &tasks {
        let arn = t.source_arn().unwrap();
        let export = first
            .started
            .iter()
            .find(|e| arn.ends_with(&e.snapshot))
            .unwrap();
        assert_eq!(t.export_task_identifier(), Some(export.task_id.as_str()));
        assert_eq!(t.s3_bucket(), Some(w.bucket.as_str()));
        assert!(
            t.s3_prefix()
                .unwrap()
                .starts_with(&format!("rds-exports/{}/", export.source))
        );
        assert_eq!(
            t.iam_role_arn(),
            Some("arn:aws:iam::123456789012:role/bridgekeeper-export")
        );
        assert_eq!(t.kms_key_id(), Some(config.kms_key_arn.as_str()));
        let kind = if export.source == aurora {
            ":cluster-snapshot:"
        } else {
            ":snapshot:"
        };
        assert!(arn.contains(kind), "{arn}");
    }

    let messages = w.inbox.receive().await?;
    assert_eq!(
        messages.len(),
        1,
        "one summary for the run that started something: {messages:?}"
    );
    assert_eq!(
        messages[0].subject.as_deref(),
        Some("[staging] RDS snapshot exports: 3 started")
    );
    assert_eq!(messages[0].attributes["function"], "snapshot-export");
    Ok(())
}

#[tokio::test]
async fn listed_identifiers_select_only_those_sources() -> Result<()> {
    let w = World::new().await?;
    let (wanted, other) = (unique("wanted-db"), unique("other-db"));
    w.instance(&wanted, false).await?;
    w.instance(&other, true).await?;
    let config = w.config(&[("SOURCE_DB_INSTANCES", &wanted)]);
    let s = summary(w.run(&config, event("schedule.json")).await?);
    let started: Vec<_> = s.started.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(started, [wanted.as_str()]);
    assert_eq!(w.tasks().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn dry_run_plans_but_starts_nothing() -> Result<()> {
    let w = World::new().await?;
    w.instance(&unique("shop-db"), true).await?;
    let s = summary(
        w.run(&w.config(&[("DRY_RUN", "true")]), event("schedule.json"))
            .await?,
    );
    assert_eq!(s.started.len(), 1);
    assert!(w.tasks().await?.is_empty());
    let messages = w.inbox.receive().await?;
    assert_eq!(
        messages[0].subject.as_deref(),
        Some("[staging] RDS snapshot exports (dry run): 1 would start")
    );
    Ok(())
}

#[tokio::test]
async fn export_completed_event_is_reported_with_its_location() -> Result<()> {
    let w = World::new().await?;
    let db = unique("shop-db");
    w.instance(&db, true).await?;
    let config = w.config(&[]);
    let run = summary(w.run(&config, event("schedule.json")).await?);
    let export = &run.started[0];
    w.inbox.receive().await?;

    w.rds_wrote(
        &export.s3_uri,
        serde_json::json!([
            {"target": "shop.public.orders", "status": "COMPLETE"}
        ]),
    )
    .await?;
    let Response::ExportEvent { report, .. } = w.run(&config, w.completed(export).await?).await?
    else {
        panic!("expected an export report")
    };
    assert_eq!(report.source, db);
    assert_eq!(report.task_id.as_deref(), Some(export.task_id.as_str()));
    assert_eq!(report.s3_uri.as_deref(), Some(export.s3_uri.as_str()));

    let messages = w.inbox.receive().await?;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].subject.as_deref(),
        Some(format!("[staging] RDS export completed: {db} ({})", export.snapshot).as_str())
    );
    assert!(
        messages[0].body.contains(&export.s3_uri),
        "{}",
        messages[0].body
    );
    assert_eq!(messages[0].attributes["outcome"], "completed");
    Ok(())
}

#[tokio::test]
async fn a_foreign_event_is_rejected_and_touches_nothing() -> Result<()> {
    use bridgekeeper::Classify;
    let w = World::new().await?;
    w.instance(&unique("shop-db"), true).await?;
    let ecr: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("events/image-rollout/push-latest.json"),
    )?)?;
    let err = w.run(&w.config(&[]), ecr).await.unwrap_err();
    let err = err.downcast::<bridgekeeper::Error>()?;
    assert_eq!(err.diagnostic().error_type, "NonRetryable.InvalidEvent");
    assert!(w.tasks().await?.is_empty());
    assert!(w.inbox.receive().await?.is_empty());
    Ok(())
}

/// An automated snapshot was created: its source is exported now, not at the next night; the
/// same event three times still starts one export.
#[tokio::test]
async fn the_snapshot_created_trigger_starts_one_export_however_often_delivered() -> Result<()> {
    let w = World::new().await?;
    let db = unique("shop-db");
    w.instance(&db, true).await?;
    let snapshots = w
        .rds
        .describe_db_snapshots()
        .db_instance_identifier(&db)
        .snapshot_type("automated")
        .send()
        .await?;
    let snap = snapshots
        .db_snapshots()
        .first()
        .context("moto made no automated snapshot")?;
    let (id, arn) = (
        snap.db_snapshot_identifier().unwrap_or_default().to_owned(),
        snap.db_snapshot_arn().unwrap_or_default().to_owned(),
    );
    let mut created = event("snapshot-created.json");
    created["detail"]["SourceIdentifier"] = serde_json::json!(id);
    created["detail"]["SourceArn"] = serde_json::json!(arn);
    let config = w.config(&[("SOURCE_DB_INSTANCES", &db)]);
    for _ in 0..3 {
        let r = w.run(&config, created.clone()).await?;
        assert!(
            matches!(&r, Response::SnapshotCreated { source, ignored: None, .. } if source == &db),
            "{r:?}"
        );
    }
    let mine: Vec<_> = w
        .tasks()
        .await?
        .into_iter()
        .filter(|t| t.source_arn() == Some(arn.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    Ok(())
}

/// A database whose backups AWS Backup manages keeps no automated snapshots (its backup
/// retention is 0); its newest snapshot is AWS Backup's `awsbackup:job-…`, and that is exported,
/// by the nightly run and by the snapshot-created event alike, with a valid deterministic id.
#[tokio::test]
async fn a_database_with_only_aws_backup_snapshots_is_exported() -> Result<()> {
    let w = World::new().await?;
    let db = unique("ledger-db");
    w.rds
        .create_db_instance()
        .db_instance_identifier(&db)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("admin")
        .master_user_password("not-a-real-password")
        .backup_retention_period(0)
        .tags(export_tag())
        .send()
        .await?;
    // The stand-in turns `awsbackup-job-<id>` into AWS Backup's `awsbackup:job-<id>`.
    let job = unique("0b1c2d3e");
    w.rds
        .create_db_snapshot()
        .db_instance_identifier(&db)
        .db_snapshot_identifier(format!("awsbackup-job-{job}"))
        .send()
        .await?;
    let listed = w
        .rds
        .describe_db_snapshots()
        .db_instance_identifier(&db)
        .send()
        .await?;
    assert!(
        listed
            .db_snapshots()
            .iter()
            .all(|s| s.snapshot_type() != Some("automated")),
        "the stand-in took an automated snapshot: {listed:?}"
    );
    let backup = format!("awsbackup:job-{job}");
    let arn = format!(
        "arn:aws:rds:{}:123456789012:snapshot:{backup}",
        w.env.region
    );

    let mut created = event("snapshot-created.json");
    created["detail"]["EventID"] = "RDS-EVENT-0042".into();
    created["detail"]["Message"] = "Manual snapshot created".into();
    created["detail"]["SourceIdentifier"] = backup.clone().into();
    created["detail"]["SourceArn"] = arn.clone().into();
    let config = w.config(&[("SOURCE_DB_INSTANCES", &db)]);
    let r = w.run(&config, created).await?;
    let Response::SnapshotCreated { source, run, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(source, db);
    let started = run.context("a run")?.started;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].snapshot, backup);
    let task = w
        .tasks()
        .await?
        .into_iter()
        .find(|t| t.source_arn() == Some(arn.as_str()))
        .context("no export task of the AWS Backup snapshot")?;
    let id = task.export_task_identifier().unwrap_or_default();
    assert!(snapshot_export::domain::is_valid_task_id(id), "{id}");
    assert!(
        task.s3_prefix()
            .unwrap_or_default()
            .contains(&format!("/{db}/")),
        "{task:?}"
    );
    // The nightly run finds it exporting: nothing started twice.
    let night = w.run(&config, event("schedule.json")).await?;
    let Response::Schedule(s) = night else {
        panic!("{night:?}")
    };
    assert!(
        s.started.is_empty() && s.already_exported.len() == 1,
        "{s:?}"
    );
    Ok(())
}

/// RDS calls an export complete though it skipped tables: the report is a warning naming them
/// with RDS's reasons, and with the catalog on the exported tables are in Glue, at this export's
/// folder, partitioned by its date.
#[tokio::test]
async fn a_completed_export_is_checked_table_by_table_and_catalogued() -> Result<()> {
    let w = World::new().await?;
    let db = unique("shop-db");
    w.instance(&db, true).await?;
    let prefix = format!("bk_{}_", unique("t").replace('-', "_"));
    let config = w.config(&[("GLUE_DATABASE_PREFIX", prefix.as_str())]);
    let run = summary(w.run(&config, event("schedule.json")).await?);
    let export = &run.started[0];
    w.inbox.receive().await?;
    w.rds_wrote(
        &export.s3_uri,
        serde_json::json!([
            {"target": "shop.public.orders", "status": "COMPLETE",
             "schemaMetadata": {"originalTypeMappings": [
                 {"columnName": "id", "expectedExportedType": "int64"},
                 {"columnName": "placed_at", "expectedExportedType": "int96"}]}},
            {"target": "shop.public.Order Notes", "status": "SKIPPED",
             "warningMessage": "Column name contains a character Parquet does not allow"},
            {"target": "shop.public.attachments", "status": "SKIPPED",
             "warningMessage": "A row is larger than 2 GB"}
        ]),
    )
    .await?;
    let Response::ExportEvent { report, .. } = w.run(&config, w.completed(export).await?).await?
    else {
        panic!("expected an export report")
    };
    let tables = report
        .completion
        .as_ref()
        .and_then(|c| c.tables.as_ref())
        .context("checked")?;
    assert_eq!(
        (tables.exported, tables.skipped.len()),
        (1, 2),
        "{report:?}"
    );

    let messages = w.inbox.receive().await?;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.attributes["severity"], "warning");
    assert!(
        m.subject
            .as_deref()
            .unwrap_or_default()
            .contains("completed with warnings")
    );
    for line in [
        "Tables:   1 exported, 2 skipped, 0 failed",
        "shop.public.Order Notes: Column name contains a character Parquet does not allow",
        "shop.public.attachments: A row is larger than 2 GB",
    ] {
        assert!(m.body.contains(line), "{line:?} not in\n{}", m.body);
    }

    let glue = aws_sdk_glue::Client::new(&w.env.sdk);
    let database = format!("{prefix}{db}").replace('-', "_");
    let table = glue
        .get_table()
        .database_name(&database)
        .name("public_orders")
        .send()
        .await?
        .table
        .context("the table")?;
    let columns: Vec<_> = table
        .storage_descriptor()
        .map(|s| {
            s.columns()
                .iter()
                .map(|c| {
                    (
                        c.name().to_owned(),
                        c.r#type().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        columns,
        [
            ("id".to_owned(), "bigint".to_owned()),
            ("placed_at".to_owned(), "timestamp".to_owned())
        ]
    );
    let partitions = glue
        .get_partitions()
        .database_name(&database)
        .table_name("public_orders")
        .send()
        .await?;
    let p = &partitions.partitions()[0];
    assert_eq!(
        p.values(),
        [export.s3_uri.rsplit('/').nth(2).unwrap_or_default()]
    );
    assert_eq!(
        p.storage_descriptor().and_then(|s| s.location()),
        Some(format!("{}shop/public.orders/", export.s3_uri).as_str())
    );
    // Skipped tables are not catalogued.
    let all = glue.get_tables().database_name(&database).send().await?;
    assert_eq!(all.table_list().len(), 1);
    Ok(())
}
