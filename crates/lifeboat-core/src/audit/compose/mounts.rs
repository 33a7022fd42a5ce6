//! The volumes and tmpfs mounts of a compose service, in the short and
//! long syntax, resolved to engine names and host paths.

use super::*;

impl Reader<'_> {
    /// `volumes` and `tmpfs` of a service.
    pub(super) fn mounts(
        &mut self,
        service: &str,
        def: &Mapping,
        volumes: &[VolumeDecl],
    ) -> Result<Vec<Mount>> {
        let mut mounts = Vec::new();
        let volume_items: &[Value] = match def.get("volumes") {
            Some(Value::Sequence(items)) => items,
            None | Some(Value::Null) => &[],
            Some(_) => {
                let line = self.outline.key(&["services", service, "volumes"]);
                return Err(self.error(line, format!("services.{service}.volumes: must be a list")));
            }
        };
        for (i, item) in volume_items.iter().enumerate() {
            let line = self
                .outline
                .item(&["services", service, "volumes"], i)
                .or_else(|| self.outline.key(&["services", service, "volumes"]));
            let spec = match item {
                Value::String(s) => parse_short(s),
                Value::Mapping(m) => parse_long(m),
                _ => Err("expected a string or a mapping".to_string()),
            }
            .map_err(|e| self.error(line, format!("services.{service}.volumes[{i}]: {e}")))?;
            let Some(mut mount) = self.resolve(service, spec, volumes, line)? else {
                continue;
            };
            mount.line = line;
            mounts.push(mount);
        }
        let tmpfs_items: Vec<String> = match def.get("tmpfs") {
            Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
            Some(other) => scalar(other).into_iter().collect(),
            None => Vec::new(),
        };
        for (i, item) in tmpfs_items.iter().enumerate() {
            let line = self
                .outline
                .item(&["services", service, "tmpfs"], i)
                .or_else(|| self.outline.key(&["services", service, "tmpfs"]));
            let (target, options) = item.split_once(':').unwrap_or((item, ""));
            let size = TmpfsSize::from_options(options)
                .map_err(|e| self.error(line, format!("services.{service}.tmpfs[{i}]: {e}")))?;
            mounts.push(Mount {
                tmpfs_size: size,
                line,
                ..Mount::new(MountType::Tmpfs, target)
            });
        }
        Ok(mounts)
    }

    /// A volume entry as a mount: named volumes to their engine names,
    /// bind sources to absolute paths. `None` for a type no rule knows.
    fn resolve(
        &mut self,
        service: &str,
        spec: VolumeSpec,
        volumes: &[VolumeDecl],
        line: Option<usize>,
    ) -> Result<Option<Mount>> {
        let kind = match spec.kind.as_str() {
            "volume" if spec.source.is_none() => MountType::Anonymous,
            "volume" => MountType::Volume,
            "bind" => MountType::Bind,
            "tmpfs" => MountType::Tmpfs,
            "npipe" => MountType::Npipe,
            other => {
                self.warnings.push(format!(
                    "{}: service {service}: mounts of type {other:?} are not checked",
                    self.path.display()
                ));
                return Ok(None);
            }
        };
        let relative =
            kind == MountType::Bind && spec.source.as_deref().is_some_and(|s| s.starts_with('.'));
        let source = match kind {
            MountType::Volume => {
                let key = spec.source.unwrap_or_default();
                let decl = volumes.iter().find(|v| v.key == key).ok_or_else(|| {
                    self.error(
                        line,
                        format!("service {service} refers to undefined volume {key}: declare it under the top-level `volumes:`"),
                    )
                })?;
                Some(decl.name.clone())
            }
            MountType::Bind => {
                let source = spec.source.ok_or_else(|| {
                    self.error(
                        line,
                        format!("services.{service}: a bind mount needs a source"),
                    )
                })?;
                Some(self.host_path(&source))
            }
            MountType::Npipe => spec.source,
            MountType::Anonymous | MountType::Tmpfs => None,
        };
        Ok(Some(Mount {
            source,
            read_only: spec.read_only,
            tmpfs_size: spec.tmpfs_size,
            relative_to: relative.then(|| self.dir.clone()),
            ..Mount::new(kind, &spec.target)
        }))
    }

    /// A bind source as an absolute host path: `~` is the home directory,
    /// relative paths are relative to the compose file.
    fn host_path(&self, source: &str) -> String {
        let home = self.options.variables.get("HOME");
        let expanded = match (source.strip_prefix('~'), home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{home}{rest}")
            }
            _ => source.to_string(),
        };
        if is_windows_path(&expanded) {
            return expanded;
        }
        let path = Path::new(&expanded);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        };
        normalize(&absolute).to_string_lossy().into_owned()
    }
}

/// A volume entry as written, before names and paths are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VolumeSpec {
    /// `volume`, `bind`, `tmpfs`, `npipe` or what else the file says.
    pub(super) kind: String,
    pub(super) source: Option<String>,
    pub(super) target: String,
    pub(super) read_only: bool,
    pub(super) tmpfs_size: Option<TmpfsSize>,
}

/// The short syntax, `[SOURCE:]TARGET[:MODE]`, split as compose splits it:
/// one part is a target (an anonymous volume), two are source and target.
/// A source starting with `.`, `/` or `~` is a bind mount.
pub(super) fn parse_short(spec: &str) -> std::result::Result<VolumeSpec, String> {
    // A Windows drive's colon (`C:\data:/data`) separates nothing.
    let drive = if is_windows_path(spec) {
        &spec[..2]
    } else {
        ""
    };
    let mut parts: Vec<String> = spec[drive.len()..].split(':').map(String::from).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("{spec:?}: empty section between colons"));
    }
    if let Some(first) = parts.first_mut().filter(|_| !drive.is_empty()) {
        first.insert_str(0, drive);
    }
    let (source, target, mode) = match parts.as_slice() {
        [target] => (None, target, ""),
        [source, target] => (Some(source), target, ""),
        [source, target, mode] => (Some(source), target, mode.as_str()),
        _ => return Err(format!("{spec:?}: too many colons")),
    };
    let kind = match source {
        Some(s) if s.starts_with(['.', '/', '~']) || is_windows_path(s) => "bind",
        _ => "volume",
    };
    Ok(VolumeSpec {
        kind: kind.to_string(),
        source: source.cloned(),
        target: target.clone(),
        read_only: mode.split(',').any(|m| m == "ro"),
        tmpfs_size: None,
    })
}

/// `C:\...` or `c:/...`.
pub(super) fn is_windows_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/')
}

/// The long syntax: `type`, `source`, `target`, `read_only`, `tmpfs.size`.
pub(super) fn parse_long(m: &Mapping) -> std::result::Result<VolumeSpec, String> {
    let source = m.get("source").and_then(scalar).filter(|s| !s.is_empty());
    let target = m
        .get("target")
        .and_then(scalar)
        .filter(|t| !t.is_empty())
        .ok_or("a volume needs a target")?;
    let kind = match m.get("type").and_then(scalar) {
        Some(kind) => kind,
        None if source
            .as_deref()
            .is_some_and(|s| s.starts_with(['.', '/', '~'])) =>
        {
            "bind".into()
        }
        None => "volume".into(),
    };
    let read_only = match m.get("read_only") {
        None | Some(Value::Null) => false,
        Some(v) => truth(v).ok_or("read_only: expected true or false")?,
    };
    let tmpfs_size = match m.get("tmpfs").and_then(|t| t.get("size")) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().filter(|&s| s > 0).map(TmpfsSize::Bytes),
        Some(v) => TmpfsSize::parse(&scalar(v).unwrap_or_default())?,
    };
    Ok(VolumeSpec {
        kind,
        source,
        target,
        read_only,
        tmpfs_size,
    })
}
