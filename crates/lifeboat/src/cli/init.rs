//! `lifeboat init`: create a repository.

use anyhow::Context;
use clap::Args;
use lifeboat_core::repo::Repo;

use super::Global;

#[derive(Debug, Args)]
pub(crate) struct InitArgs {}

pub(crate) async fn run(global: &Global, _args: InitArgs) -> anyhow::Result<u8> {
    let settings = global.repo_settings();
    let (repo, report) = tokio::task::spawn_blocking(move || Repo::init(&settings))
        .await
        .context("creating the repository")??;
    if global.json {
        let value = serde_json::json!({
            "repository": repo.location(),
            "created": report.created,
            "generated_password_file": report.generated_password_file,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        if let Some(file) = &report.generated_password_file {
            crate::output::loud_password_notice(file);
        }
    } else {
        super::announce(&repo, &report);
    }
    Ok(crate::exit::SUCCESS)
}
