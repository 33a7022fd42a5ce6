//! Which strategy was asked for a target, and where: the command line, a
//! label on the volume or on a container that mounts it, the
//! configuration file, or offen/docker-volume-backup's stop label. What
//! to do without any is [`crate::plan`]'s decision.

use std::collections::BTreeMap;

use super::{Config, Strategy};
use crate::engine::EngineContainer;
use crate::inventory::Target;

/// The label that picks a strategy, on a volume or a container.
pub const STRATEGY_LABEL: &str = "lifeboat.strategy";

/// offen/docker-volume-backup's label for containers to stop.
pub const OFFEN_STOP_LABEL: &str = "docker-volume-backup.stop-during-backup";

/// Strategies given on the command line.
#[derive(Clone, Debug, Default)]
pub struct StrategyFlags {
    /// For every target of the run.
    pub all: Option<Strategy>,
    /// For single targets, by volume name or bind-mount path.
    pub by_target: BTreeMap<String, Strategy>,
}

/// The strategy asked for `target`, and where, in this order: a flag for
/// the target, a flag for all, the label on the volume, the label on a
/// container of `users`, the configuration file, offen's stop label on a
/// container. `None`: nothing was asked.
pub fn asked(
    target: &Target,
    users: &[&EngineContainer],
    flags: &StrategyFlags,
    config: &Config,
) -> Option<(Strategy, String)> {
    flags
        .by_target
        .get(&target.name)
        .map(|s| (*s, format!("flag --strategy {}={s}", target.name)))
        .or_else(|| flags.all.map(|s| (s, format!("flag --strategy {s}"))))
        .or_else(|| label_strategy(&target.labels, &format!("volume {}", target.name)))
        .or_else(|| {
            users
                .iter()
                .find_map(|c| label_strategy(&c.labels, &format!("container {}", c.name)))
        })
        .or_else(|| config.strategy_of(target))
        .or_else(|| {
            users.iter().find_map(|c| {
                (c.labels.get(OFFEN_STOP_LABEL).map(String::as_str) == Some("true")).then(|| {
                    (
                        Strategy::Stop,
                        format!("label {OFFEN_STOP_LABEL}=true on container {}", c.name),
                    )
                })
            })
        })
}

fn label_strategy(labels: &BTreeMap<String, String>, on: &str) -> Option<(Strategy, String)> {
    let value = labels.get(STRATEGY_LABEL)?;
    match value.parse::<Strategy>() {
        Ok(s) => Some((s, format!("label {STRATEGY_LABEL}={s} on {on}"))),
        Err(_) => {
            tracing::warn!("ignoring {STRATEGY_LABEL}={value:?} on {on}: use dump, stop or live");
            None
        }
    }
}
