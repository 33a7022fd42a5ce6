//! The inventory: every volume, bind mount and tmpfs of the engine, who
//! uses it, what it holds, and when it was last backed up.

use super::session::{RepoSnapshots, Session};
use crate::error::Result;
use crate::inventory::{self, Inventory, InventoryOptions};

/// The inventory, with each target's last backup when the repository can
/// be read.
#[derive(Debug)]
pub struct InventoryReport {
    pub inventory: Inventory,
    /// The repository looked in.
    pub repository: String,
    /// Why last backups are unknown, when they are.
    pub repository_error: Option<String>,
}

/// Takes the inventory; the repository's snapshots are read meanwhile.
pub async fn inventory(session: &Session, options: InventoryOptions) -> Result<InventoryReport> {
    let engine = session.engine().await?;
    let (inventory, snapshots) = tokio::join!(
        inventory::discover(engine, options),
        session.snapshots_if_any()
    );
    let mut inventory = inventory?;
    let repository_error = match snapshots {
        RepoSnapshots::Listed(snapshots) => {
            inventory::attach_snapshots(&mut inventory, &snapshots);
            None
        }
        RepoSnapshots::Missing { location } => Some(format!("no repository at {location}")),
        RepoSnapshots::Unreadable { location, error } => {
            Some(format!("opening repository {location}: {error}"))
        }
    };
    Ok(InventoryReport {
        inventory,
        repository: session.repo_settings().shown_location(),
        repository_error,
    })
}
