//! `lifeboat check`: the repository's structure, and its data when asked.

use clap::Args;
use lifeboat_core::ops::{self, Session};
use lifeboat_core::repo::{CheckReport, ReadData};

use super::Global;
use crate::output::{errln, outln};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Also read every pack back and check its content.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,

    /// Also read a part of the packs back: a percentage (10%), a part
    /// (1/5: the first of five; n/5 in turn covers all), or a size (2GiB).
    #[arg(long, value_name = "SUBSET")]
    read_data_subset: Option<String>,
}

pub(crate) async fn run(session: &Session, global: &Global, args: CheckArgs) -> anyhow::Result<u8> {
    let read = match (&args.read_data_subset, args.read_data) {
        (Some(subset), _) => ReadData::subset(subset)?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let report = ops::check::check(session, &read).await?;
    if global.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(if report.ok() {
        crate::exit::SUCCESS
    } else {
        crate::exit::FAILURE
    })
}

fn print(report: &CheckReport) {
    for warning in &report.warnings {
        outln!("warning: {warning}");
    }
    for error in &report.errors {
        outln!("error: {error}");
    }
    let read = match &report.read_data {
        ReadData::None => "the structure (index, packs, snapshots, trees)".to_string(),
        ReadData::All => "the structure and every pack's data".to_string(),
        ReadData::Subset(subset) => format!("the structure and the data of packs {subset}"),
    };
    if report.ok() {
        outln!(
            "checked {read} of {} snapshot(s) in {:.1}s: no errors{}",
            report.snapshots,
            report.seconds,
            match report.warnings.len() {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            }
        );
    } else {
        errln!(
            "lifeboat: the repository has {} error(s) ({read} checked): snapshots that use what is damaged may not restore",
            report.errors.len()
        );
    }
}
