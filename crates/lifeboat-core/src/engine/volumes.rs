//! Named volumes: listed, inspected, made and removed, and the rule their
//! names follow.

use std::collections::BTreeMap;

use bollard::models::VolumeCreateRequest;
use serde::Serialize;

use super::Engine;
use crate::error::{Error, Result};

/// A named volume as the engine describes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineVolume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created_at: Option<String>,
}

impl Engine {
    /// Every named volume of the engine.
    pub async fn volumes(&self) -> Result<Vec<EngineVolume>> {
        let list = self
            .docker
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .map_err(|e| Error::engine("listing volumes", e))?;
        let mut volumes: Vec<_> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_from_model)
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// One volume, or `None` when the engine has no volume of that name.
    pub async fn volume(&self, name: &str) -> Result<Option<EngineVolume>> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(volume_from_model(v))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting volume {name}"), e)),
        }
    }

    /// Creates a volume with the given driver, driver options and labels.
    pub async fn create_volume(
        &self,
        name: &str,
        driver: &str,
        options: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<EngineVolume> {
        // An empty name would make the engine invent one: a volume nobody
        // asked for, and a restore into it that nobody finds.
        check_volume_name(name)?;
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some(driver.to_string()),
            driver_opts: Some(options.clone().into_iter().collect()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let v = self
            .docker
            .create_volume(request)
            .await
            .map_err(|e| Error::engine(format!("creating volume {name}"), e))?;
        Ok(volume_from_model(v))
    }

    /// Removes a volume (one lifeboat created and must undo, or one
    /// pruned); the engine refuses one a container uses.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| Error::engine(format!("removing volume {name}"), e))
    }
}

fn volume_from_model(v: bollard::models::Volume) -> EngineVolume {
    EngineVolume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        labels: v.labels.into_iter().collect(),
        options: v.options.into_iter().collect(),
        created_at: v.created_at.map(|d| d.to_string()),
    }
}

/// Refuses a name the engine would not take as a volume's, the way the
/// engine's own rule reads (a letter or digit, then letters, digits, `_`,
/// `.` or `-`; two characters at least), before anything is done.
pub(crate) fn check_volume_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        return Ok(());
    }
    Err(Error::BadRequest(format!(
        "{name:?} is not a volume name: a volume name is a letter or digit followed by letters, digits, '_', '.' or '-' (a directory is given by its absolute path)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_the_engine_rule() {
        for good in ["db", "pg-data_1.old", "0x"] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-db", ".db", "a/b", "/srv/data", "db data", "db\n"] {
            let err = check_volume_name(bad).expect_err(bad);
            assert_eq!(err.class(), crate::ErrorClass::BadRequest, "{bad}");
        }
    }
}
