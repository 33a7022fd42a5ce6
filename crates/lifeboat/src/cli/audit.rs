//! `lifeboat audit`: the persistence mistakes of the engine, or of a
//! compose file, before they cost data.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use clap::{Args, ValueEnum};
use lifeboat_core::audit::compose::{self, ComposeOptions};
use lifeboat_core::audit::sarif::{SarifOptions, to_sarif};
use lifeboat_core::audit::variables::compose_variables;
use lifeboat_core::audit::{self, Finding, Location, Severity, Stack};
use lifeboat_core::config::Config;
use lifeboat_core::engine::Engine;
use lifeboat_core::inventory::{self, InventoryOptions};
use lifeboat_core::repo::{RepoSettings, SnapshotInfo};

use super::Global;
use crate::output::{Table, errln, outln};

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Audit this compose file instead of the engine's containers. The
    /// engine, when reachable, is only asked which volumes exist.
    #[arg(short = 'f', long = "file", value_name = "COMPOSE_FILE")]
    file: Option<PathBuf>,

    /// The compose project name (default: COMPOSE_PROJECT_NAME, the
    /// file's `name:`, or its directory's name).
    #[arg(short = 'p', long, value_name = "NAME", requires = "file")]
    project_name: Option<String>,

    /// With --file: do not contact the engine at all (external volumes
    /// are then not checked).
    #[arg(long, requires = "file")]
    offline: bool,

    /// The output: a table grouped by severity, JSON, or SARIF 2.1.0 for
    /// code-scanning tools (default: table, or json with --json).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,

    /// Exit with code 8 when a finding at or above this severity exists
    /// (default: findings do not change the exit code).
    #[arg(long, value_enum, value_name = "SEVERITY")]
    fail_on: Option<Threshold>,

    /// Print the long explanation of a rule (by id, such as LB003, or by
    /// name) and exit.
    #[arg(long, value_name = "RULE", conflicts_with_all = ["file", "list_rules"])]
    explain: Option<String>,

    /// List the rules and exit.
    #[arg(long, conflicts_with = "file")]
    list_rules: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Sarif,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Threshold {
    Low,
    Medium,
    High,
    Critical,
}

impl From<Threshold> for Severity {
    fn from(t: Threshold) -> Self {
        match t {
            Threshold::Low => Self::Low,
            Threshold::Medium => Self::Medium,
            Threshold::High => Self::High,
            Threshold::Critical => Self::Critical,
        }
    }
}

pub(crate) async fn run(global: &Global, args: AuditArgs) -> anyhow::Result<u8> {
    if let Some(wanted) = &args.explain {
        return explain(wanted, global.json);
    }
    if args.list_rules {
        return list_rules(global.json);
    }
    let format = format_of(&args, global)?;
    let stack = match &args.file {
        Some(file) => compose_stack(file, &args).await?,
        None => engine_stack(global).await?,
    };
    let findings = audit::audit(&stack, SystemTime::now());
    match format {
        Format::Table => print_table(&findings),
        Format::Json => print_json(&stack, &findings)?,
        Format::Sarif => print_sarif(&findings)?,
    }
    for warning in &stack.warnings {
        errln!("lifeboat: warning: {warning}");
    }
    let failed = args
        .fail_on
        .is_some_and(|t| audit::fail_on(&findings, t.into()));
    Ok(if failed {
        crate::exit::FINDINGS
    } else {
        crate::exit::SUCCESS
    })
}

/// The output format: `--format`, else `--json`, else the table.
fn format_of(args: &AuditArgs, global: &Global) -> anyhow::Result<Format> {
    match (args.format, global.json) {
        (Some(f), true) if f != Format::Json => Err(lifeboat_core::Error::BadRequest(format!(
            "--json and --format {} disagree: give one of them",
            f.to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        ))
        .into()),
        (Some(f), _) => Ok(f),
        (None, true) => Ok(Format::Json),
        (None, false) => Ok(Format::Table),
    }
}

fn explain(wanted: &str, json: bool) -> anyhow::Result<u8> {
    let rule = audit::rule(wanted).ok_or_else(|| {
        lifeboat_core::Error::BadRequest(format!(
            "no audit rule {wanted:?}: `lifeboat audit --list-rules` lists them"
        ))
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(rule)?);
    } else {
        outln!("{} {} ({})", rule.id, rule.name, rule.severity);
        outln!("{}", rule.summary);
        outln!();
        outln!("{}", rule.explanation);
    }
    Ok(crate::exit::SUCCESS)
}

fn list_rules(json: bool) -> anyhow::Result<u8> {
    if json {
        outln!("{}", serde_json::to_string_pretty(audit::rules())?);
        return Ok(crate::exit::SUCCESS);
    }
    let mut table = Table::new(&["RULE", "SEVERITY", "NAME", "FINDS"]);
    for r in audit::rules() {
        table.row(vec![
            r.id.to_string(),
            r.severity.to_string(),
            r.name.to_string(),
            r.summary.to_string(),
        ]);
    }
    table.print();
    Ok(crate::exit::SUCCESS)
}

/// The stack of a compose file, read as `docker compose` would read it on
/// this host: variables from `.env` and the environment, bind sources
/// looked at here, and the engine's volumes when the engine answers.
async fn compose_stack(file: &Path, args: &AuditArgs) -> anyhow::Result<Stack> {
    // Variables that are not UTF-8 cannot appear in a compose file's
    // values either way.
    let environment = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let variables = compose_variables(file, environment)?;
    let (existing_volumes, engine_note) = if args.offline {
        (None, None)
    } else {
        match engine_volume_names().await {
            Ok(names) => (Some(names), None),
            Err(e) => (
                None,
                Some(format!(
                    "{e}: whether external volumes exist is not checked (use --offline to not ask)"
                )),
            ),
        }
    };
    let options = ComposeOptions {
        variables,
        project_name: args.project_name.clone(),
        existing_volumes,
    };
    let mut stack = compose::load(file, &options)?;
    stack.inspect_bind_sources();
    stack.warnings.extend(engine_note);
    Ok(stack)
}

async fn engine_volume_names() -> lifeboat_core::Result<std::collections::BTreeSet<String>> {
    let engine = Engine::connect().await?;
    Ok(engine
        .volumes()
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect())
}

/// The stack of the engine, with the repository's snapshots when it can
/// be read.
async fn engine_stack(global: &Global) -> anyhow::Result<Stack> {
    let config = Config::find(global.config.as_deref())?;
    let engine = super::connect().await?;
    let options = InventoryOptions {
        sizes: false,
        size_deadline: None,
    };
    let (inventory, (snapshots, repo_note)) = tokio::join!(
        inventory::discover(&engine, options),
        snapshots(global.repo_settings())
    );
    let inventory = inventory?;
    let mut stack = audit::engine_stack(&engine, &inventory, snapshots.as_deref(), &config).await?;
    stack.warnings.splice(0..0, repo_note);
    Ok(stack)
}

/// The repository's snapshots: none at all when there is no repository,
/// `None` (and why) when it cannot be read.
async fn snapshots(settings: RepoSettings) -> (Option<Vec<SnapshotInfo>>, Option<String>) {
    let location = settings.shown_location();
    match settings.exists() {
        Ok(false) => {
            return (
                Some(Vec::new()),
                Some(format!(
                    "no repository at {location}: every volume counts as never backed up"
                )),
            );
        }
        Ok(true) => {}
        Err(e) => return (None, Some(unreadable(&location, &format!("{e}")))),
    }
    let read = async {
        let repo = super::open_repo(settings).await?;
        tokio::task::spawn_blocking(move || repo.snapshots())
            .await
            .context("reading the snapshots")?
            .map_err(anyhow::Error::from)
    };
    match read.await {
        Ok(list) => (Some(list), None),
        Err(e) => (None, Some(unreadable(&location, &format!("{e:#}")))),
    }
}

fn unreadable(location: &str, error: &str) -> String {
    format!("cannot read the repository at {location} ({error}): backups are not checked")
}

/// Where a finding is, in a few words.
fn place(finding: &Finding) -> String {
    match &finding.location {
        Location::Compose { file, line, .. } => match line {
            Some(line) => format!("{}:{line}", file.display()),
            None => file.display().to_string(),
        },
        Location::Engine { container: Some(c) } => format!("container {c}"),
        Location::Engine { container: None } => match &finding.volume {
            Some(v) => format!("volume {v}"),
            None => finding.subject.clone(),
        },
    }
}

fn print_table(findings: &[Finding]) {
    if findings.is_empty() {
        outln!("no findings");
        return;
    }
    let groups = audit::by_severity(findings);
    for (i, (severity, group)) in groups.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        outln!("{} ({})", severity.as_str().to_uppercase(), group.len());
        let mut table = Table::new(&["RULE", "WHERE", "FINDING"]);
        for f in group {
            table.row(vec![f.rule.to_string(), place(f), f.message.clone()]);
            table.row(vec![
                String::new(),
                String::new(),
                format!("fix: {}", f.fix),
            ]);
        }
        table.print();
    }
    let counts: Vec<String> = groups
        .iter()
        .map(|(severity, group)| format!("{} {severity}", group.len()))
        .collect();
    outln!();
    outln!(
        "{} finding{}: {} (`lifeboat audit --explain RULE` says why and how to fix)",
        findings.len(),
        if findings.len() == 1 { "" } else { "s" },
        counts.join(", ")
    );
}

fn print_json(stack: &Stack, findings: &[Finding]) -> anyhow::Result<()> {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let value = serde_json::json!({
        "origin": stack.origin,
        "project": stack.project,
        "findings": findings,
        "counts": {
            "critical": count(Severity::Critical),
            "high": count(Severity::High),
            "medium": count(Severity::Medium),
            "low": count(Severity::Low),
        },
        "warnings": stack.warnings,
    });
    outln!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// SARIF with file locations relative to the working directory: in CI,
/// the root of the checkout, which is what code-scanning tools expect.
fn print_sarif(findings: &[Finding]) -> anyhow::Result<()> {
    let cwd = std::env::current_dir().ok();
    let log = to_sarif(
        findings,
        &SarifOptions {
            base: cwd.as_deref(),
            information_uri: None,
        },
    );
    outln!("{}", serde_json::to_string_pretty(&log)?);
    Ok(())
}
