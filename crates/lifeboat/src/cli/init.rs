//! `lifeboat init`: create a repository.

use clap::Args;
use lifeboat_core::ops::{self, Session};
use lifeboat_core::repo::DEFAULT_COMPRESSION;

use super::Global;
use crate::output::{errln, outln};

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// zstd level of the repository's blobs: -7 (fastest) to 22
    /// (smallest); 0 stores them uncompressed.
    #[arg(long, value_name = "LEVEL", default_value_t = DEFAULT_COMPRESSION, allow_negative_numbers = true)]
    compression: i32,
}

pub(crate) async fn run(session: &Session, global: &Global, args: InitArgs) -> anyhow::Result<u8> {
    let report = ops::init::init(session, args.compression).await?;
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.created {
        errln!("lifeboat: created repository {}", report.repository);
    }
    if let Some(file) = &report.generated_password_file {
        crate::output::loud_password_notice(file);
    }
    Ok(crate::exit::SUCCESS)
}
