//! The Glue adapter: the catalog entries `catalog` plans, created once each. Every call is safe
//! to repeat: what exists already (a redelivered completion, another night's export of the same
//! table) is left as it is.

use std::future::Future;

use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};
use bridgekeeper::AwsError;

use crate::catalog::CatalogTable;

pub trait Catalog: Send + Sync {
    fn database(
        &self,
        name: &str,
        description: &str,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The table (if new) and this export's partition of it.
    fn table(
        &self,
        database: &str,
        table: &CatalogTable,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
}

impl GlueCatalog {
    pub fn new(client: aws_sdk_glue::Client) -> Self {
        GlueCatalog { client }
    }
}

/// `AlreadyExistsException` is the answer to a repeated create: done already.
fn created<T, E>(
    operation: &'static str,
    r: Result<T, aws_sdk_glue::error::SdkError<E, aws_sdk_glue::config::http::HttpResponse>>,
) -> Result<(), AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("AlreadyExistsException") => Ok(()),
        Err(e) => Err(AwsError::from_sdk(operation, e)),
    }
}

fn invalid(e: aws_sdk_glue::error::BuildError) -> AwsError {
    AwsError {
        operation: "glue:CreateTable",
        code: Some("InvalidInput".into()),
        message: Some(e.to_string()),
        request_id: None,
        status: None,
        class: bridgekeeper::Class::NonRetryable,
        source: Box::new(e),
    }
}

fn storage(location: &str, columns: &[(String, String)]) -> Result<StorageDescriptor, AwsError> {
    let columns = columns
        .iter()
        .map(|(name, t)| Column::builder().name(name).r#type(t).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    Ok(StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(location)
        .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
        .output_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(
                    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                )
                .build(),
        )
        .build())
}

impl Catalog for GlueCatalog {
    async fn database(&self, name: &str, description: &str) -> Result<(), AwsError> {
        let input = DatabaseInput::builder()
            .name(name)
            .description(description)
            .build()
            .map_err(invalid)?;
        let r = self
            .client
            .create_database()
            .database_input(input)
            .send()
            .await;
        created("glue:CreateDatabase", r)
    }

    async fn table(&self, database: &str, t: &CatalogTable) -> Result<(), AwsError> {
        let input = TableInput::builder()
            .name(&t.name)
            .table_type("EXTERNAL_TABLE")
            .parameters("classification", "parquet")
            // The files are encrypted with the stack's export key: a reader needs kms:Decrypt.
            .parameters("has_encrypted_data", "true")
            .partition_keys(
                Column::builder()
                    .name("export_date")
                    .r#type("string")
                    .build()
                    .map_err(invalid)?,
            )
            .storage_descriptor(storage(&t.location, &t.columns)?)
            .build()
            .map_err(invalid)?;
        let r = self
            .client
            .create_table()
            .database_name(database)
            .table_input(input)
            .send()
            .await;
        created("glue:CreateTable", r)?;
        let partition = PartitionInput::builder()
            .values(&t.partition)
            .storage_descriptor(storage(&t.partition_location, &t.columns)?)
            .build();
        let r = self
            .client
            .create_partition()
            .database_name(database)
            .table_name(&t.name)
            .partition_input(partition)
            .send()
            .await;
        created("glue:CreatePartition", r)
    }
}
