//! `lifeboat init`: create a repository.

use anyhow::Context;
use clap::Args;
use lifeboat_core::repo::{DEFAULT_COMPRESSION, Repo};

use super::Global;
use crate::output::outln;

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// zstd level of the repository's blobs: -7 (fastest) to 22
    /// (smallest); 0 stores them uncompressed.
    #[arg(long, value_name = "LEVEL", default_value_t = DEFAULT_COMPRESSION, allow_negative_numbers = true)]
    compression: i32,
}

pub(crate) async fn run(global: &Global, args: InitArgs) -> anyhow::Result<u8> {
    let settings = global.repo_settings();
    let (repo, report) =
        tokio::task::spawn_blocking(move || Repo::init_with(&settings, args.compression))
            .await
            .context("creating the repository")??;
    if global.json {
        let value = serde_json::json!({
            "repository": repo.location(),
            "created": report.created,
            "generated_password_file": report.generated_password_file,
        });
        outln!("{}", serde_json::to_string_pretty(&value)?);
        if let Some(file) = &report.generated_password_file {
            crate::output::loud_password_notice(file);
        }
    } else {
        super::announce(&repo, &report);
    }
    Ok(crate::exit::SUCCESS)
}
