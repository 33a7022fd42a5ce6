//! `lifeboat audit`: the persistence mistakes of the engine, or of a
//! compose file, before they cost data.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lifeboat_core::audit::sarif::{SarifOptions, to_sarif};
use lifeboat_core::audit::{self, Finding, Location, Severity, Stack};
use lifeboat_core::ops::audit::{AuditReport, AuditSource};
use lifeboat_core::ops::{self, Session};

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

pub(crate) async fn run(session: &Session, global: &Global, args: AuditArgs) -> anyhow::Result<u8> {
    if let Some(wanted) = &args.explain {
        return explain(wanted, global.json);
    }
    if args.list_rules {
        return list_rules(global.json);
    }
    let format = format_of(&args, global)?;
    let source = match args.file {
        Some(file) => AuditSource::Compose {
            file,
            project_name: args.project_name,
            offline: args.offline,
            // Variables that are not UTF-8 cannot appear in a compose
            // file's values either way.
            environment: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        },
        None => AuditSource::Engine,
    };
    let AuditReport { stack, findings } = ops::audit::audit(session, &source).await?;
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
