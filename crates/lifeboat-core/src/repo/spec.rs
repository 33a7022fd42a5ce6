//! What a snapshot records about the volume or bind mount it holds.
//!
//! Everything needed to recreate a volume exactly (name, driver, driver
//! options, labels) and to know where it came from (containers, images,
//! compose project) is stored as snapshot tags of the form `key=value`, so
//! that restic users can filter on them too (`restic snapshots --tag
//! volume=pgdata`). Tags are stored as separate strings: values may hold
//! any character, including commas.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// The tag every lifeboat snapshot carries.
pub const LIFEBOAT_TAG: &str = "lifeboat";

/// The tag of a snapshot taken just before a forced restore overwrote the
/// volume, so that the restore can be undone.
pub const PRE_RESTORE_TAG: &str = "pre-restore";

/// The tag of the first, live pass of a stopped backup: the base the
/// stopped pass is taken on top of, deleted after it. One left behind by a
/// killed backup is not a restore point.
pub const PREPASS_TAG: &str = "prepass";

/// Whether a snapshot holds a named volume or a bind mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Volume,
    Bind,
}

impl TargetKind {
    /// The kind as it is shown: `volume`, `bind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Bind => "bind",
        }
    }
}

/// A volume or bind mount as a snapshot describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetSpec {
    pub kind: Option<TargetKind>,
    /// The volume's name, or the bind mount's host path.
    pub name: String,
    pub driver: Option<String>,
    pub driver_options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub containers: Vec<String>,
    pub images: Vec<String>,
    pub compose_project: Option<String>,
    /// Other tags (markers such as `pre-restore`).
    pub extra_tags: Vec<String>,
}

impl TargetSpec {
    /// Whether the snapshot is an ordinary backup, one `latest` may pick:
    /// not the undo copy of a restore, not the first pass of a stopped
    /// backup.
    pub fn is_restore_point(&self) -> bool {
        !self
            .extra_tags
            .iter()
            .any(|t| t == PRE_RESTORE_TAG || t == PREPASS_TAG)
    }

    /// The value of an extra `key=value` tag (`strategy`, `database`).
    pub fn extra(&self, key: &str) -> Option<&str> {
        self.extra_tags
            .iter()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
    }

    /// The path the target's root gets inside the snapshot tree:
    /// `/volumes/NAME` or `/binds/HOST/PATH`.
    pub fn snapshot_path(&self) -> PathBuf {
        match self.kind {
            Some(TargetKind::Bind) => {
                PathBuf::from("/binds").join(self.name.trim_start_matches('/'))
            }
            _ => PathBuf::from("/volumes").join(&self.name),
        }
    }

    /// The tags that record this spec.
    pub fn to_tags(&self) -> Vec<String> {
        let mut tags = vec![LIFEBOAT_TAG.to_string()];
        match self.kind {
            Some(TargetKind::Bind) => tags.push(format!("bind={}", self.name)),
            _ => tags.push(format!("volume={}", self.name)),
        }
        if let Some(driver) = &self.driver {
            tags.push(format!("driver={driver}"));
        }
        tags.extend(
            self.driver_options
                .iter()
                .map(|(k, v)| format!("driver-opt={k}={v}")),
        );
        tags.extend(self.labels.iter().map(|(k, v)| format!("label={k}={v}")));
        tags.extend(self.containers.iter().map(|c| format!("container={c}")));
        tags.extend(self.images.iter().map(|i| format!("image={i}")));
        if let Some(project) = &self.compose_project {
            tags.push(format!("compose-project={project}"));
        }
        tags.extend(self.extra_tags.iter().cloned());
        tags
    }

    /// Reads a spec back from a snapshot's tags; `None` when the snapshot is
    /// not one of lifeboat's.
    pub fn from_tags<'a>(tags: impl IntoIterator<Item = &'a String>) -> Option<Self> {
        let mut spec = Self::default();
        let mut ours = false;
        for tag in tags {
            let Some((key, value)) = tag.split_once('=') else {
                if tag == LIFEBOAT_TAG {
                    ours = true;
                } else {
                    spec.extra_tags.push(tag.clone());
                }
                continue;
            };
            let pair = || {
                value
                    .split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            };
            match key {
                "volume" => {
                    spec.kind = Some(TargetKind::Volume);
                    spec.name = value.to_string();
                }
                "bind" => {
                    spec.kind = Some(TargetKind::Bind);
                    spec.name = value.to_string();
                }
                "driver" => spec.driver = Some(value.to_string()),
                "driver-opt" => spec.driver_options.extend(pair()),
                "label" => spec.labels.extend(pair()),
                "container" => spec.containers.push(value.to_string()),
                "image" => spec.images.push(value.to_string()),
                "compose-project" => spec.compose_project = Some(value.to_string()),
                _ => spec.extra_tags.push(tag.clone()),
            }
        }
        (ours && spec.kind.is_some()).then_some(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip_through_tags() {
        let spec = TargetSpec {
            kind: Some(TargetKind::Volume),
            name: "app_pgdata".into(),
            driver: Some("local".into()),
            driver_options: [
                ("type".into(), "nfs".into()),
                ("o".into(), "addr=10.0.0.1,rw".into()),
            ]
            .into(),
            labels: [("com.example=odd".into(), "a,b=c".into())].into(),
            containers: vec!["app-db-1".into()],
            images: vec!["postgres:15".into()],
            compose_project: Some("app".into()),
            extra_tags: vec![PRE_RESTORE_TAG.into()],
        };
        let tags = spec.to_tags();
        let back = TargetSpec::from_tags(&tags).expect("a lifeboat snapshot");
        // Keys may not contain '=' in tags: the first '=' after the prefix
        // splits key from value.
        assert_eq!(
            back.labels.get("com.example"),
            Some(&"odd=a,b=c".to_string())
        );
        assert_eq!(back.driver_options, spec.driver_options);
        assert_eq!(back.containers, spec.containers);
        assert_eq!(back.compose_project, spec.compose_project);
        assert_eq!(back.extra_tags, spec.extra_tags);
        assert_eq!(back.snapshot_path(), PathBuf::from("/volumes/app_pgdata"));
    }

    #[test]
    fn bind_mounts_live_under_binds() {
        let spec = TargetSpec {
            kind: Some(TargetKind::Bind),
            name: "/srv/app/uploads".into(),
            ..Default::default()
        };
        assert_eq!(
            spec.snapshot_path(),
            PathBuf::from("/binds/srv/app/uploads")
        );
        let back = TargetSpec::from_tags(&spec.to_tags()).expect("ours");
        assert_eq!(back.kind, Some(TargetKind::Bind));
        assert_eq!(back.name, "/srv/app/uploads");
    }

    #[test]
    fn foreign_snapshots_are_not_ours() {
        let tags = vec!["volume=x".to_string()];
        assert_eq!(TargetSpec::from_tags(&tags), None);
    }
}
