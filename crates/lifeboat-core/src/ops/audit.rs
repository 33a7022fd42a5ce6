//! The audit: the persistence mistakes of the engine, or of a compose
//! file, before they cost data.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::SystemTime;

use super::session::{RepoSnapshots, Session};
use crate::audit::compose::{self, ComposeOptions};
use crate::audit::variables::compose_variables;
use crate::audit::{self as rules, Finding, Stack};
use crate::error::Result;
use crate::inventory::{self, InventoryOptions};

/// What to audit.
#[derive(Clone, Debug)]
pub enum AuditSource {
    /// The engine's containers and volumes, with the repository's
    /// snapshots when it can be read.
    Engine,
    /// A compose file, read as `docker compose` would read it on this
    /// host: variables from `.env` and `environment`, bind sources looked
    /// at here, and the engine's volumes unless `offline`.
    Compose {
        file: PathBuf,
        /// The project name (default: the one compose would take).
        project_name: Option<String>,
        offline: bool,
        environment: Vec<(String, String)>,
    },
}

/// What the audit found, and what it read.
#[derive(Debug)]
pub struct AuditReport {
    pub stack: Stack,
    pub findings: Vec<Finding>,
}

/// Audits the engine or a compose file.
pub async fn audit(session: &Session, source: &AuditSource) -> Result<AuditReport> {
    let stack = match source {
        AuditSource::Engine => engine_stack(session).await?,
        AuditSource::Compose {
            file,
            project_name,
            offline,
            environment,
        } => {
            let variables = compose_variables(file, environment.iter().cloned())?;
            let (existing_volumes, engine_note) = if *offline {
                (None, None)
            } else {
                match volume_names().await {
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
                project_name: project_name.clone(),
                existing_volumes,
            };
            let mut stack = compose::load(file, &options)?;
            stack.inspect_bind_sources();
            stack.warnings.extend(engine_note);
            stack
        }
    };
    let findings = rules::audit(&stack, SystemTime::now());
    Ok(AuditReport { stack, findings })
}

/// The engine's volumes; only they are asked for, so nothing else of the
/// session's engine (its clean-up of leftover helpers) runs.
async fn volume_names() -> Result<BTreeSet<String>> {
    Ok(crate::engine::Engine::connect()
        .await?
        .volumes()
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect())
}

/// The stack of the engine, with the repository's snapshots when it can
/// be read; without a repository, every volume counts as never backed up.
async fn engine_stack(session: &Session) -> Result<Stack> {
    let config = session.config()?;
    let engine = session.engine().await?;
    let options = InventoryOptions {
        sizes: false,
        size_deadline: None,
    };
    let (inventory, snapshots) = tokio::join!(
        inventory::discover(engine, options),
        session.snapshots_if_any()
    );
    let inventory = inventory?;
    let (snapshots, repo_note) = match snapshots {
        RepoSnapshots::Listed(list) => (Some(list), None),
        RepoSnapshots::Missing { location } => (
            Some(Vec::new()),
            Some(format!(
                "no repository at {location}: every volume counts as never backed up"
            )),
        ),
        RepoSnapshots::Unreadable { location, error } => (
            None,
            Some(format!(
                "cannot read the repository at {location} ({error}): backups are not checked"
            )),
        ),
    };
    let mut stack = rules::engine_stack(engine, &inventory, snapshots.as_deref(), &config).await?;
    stack.warnings.splice(0..0, repo_note);
    Ok(stack)
}
