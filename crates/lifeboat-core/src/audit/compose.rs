//! Compose files, read without an engine into a [`Stack`].
//!
//! What is read is what persistence depends on: each service's image,
//! user, environment, command, labels, replicas, `depends_on`, volumes in
//! the short (`pgdata:/var/lib/postgresql/data:ro`) and long (`type:
//! bind`, `source`, `target`, `read_only`, `tmpfs.size`) syntax and
//! `tmpfs`; the top-level `volumes` with `name`, `external`, `driver`,
//! `driver_opts` and `labels`. Values are interpolated first (see
//! [`super::variables`]), YAML merge keys are applied, `x-` extensions are
//! skipped. Relative bind sources resolve against the compose file's
//! directory and named volumes to the engine's names (`<project>_<key>`).
//!
//! A file that is not a compose file is an error naming the file (and the
//! line, where known), never a panic. Features that are not followed
//! (`extends`, `include`, `volumes_from: [container:...]`) become warnings
//! on the stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::lines::Outline;
use super::model::{Mount, MountType, Origin, Service, Stack, VolumeDecl};
use super::rules;
use super::variables::{Interpolator, read_dotenv};
use crate::error::{Error, Result};
use crate::tmpfs::TmpfsSize;

/// What a compose file is read with, besides its text.
#[derive(Clone, Debug, Default)]
pub struct ComposeOptions {
    /// The variables for interpolation: see
    /// [`super::variables::compose_variables`].
    pub variables: BTreeMap<String, String>,
    /// The project name given on the command line (`-p`), which wins over
    /// `COMPOSE_PROJECT_NAME`, the file's `name:` and its directory's name.
    pub project_name: Option<String>,
    /// The names of the volumes that exist on the engine, when known: lets
    /// the audit tell that an external volume is missing.
    pub existing_volumes: Option<BTreeSet<String>>,
}

/// Reads the compose file at `path`.
pub fn load(path: &Path, options: &ComposeOptions) -> Result<Stack> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        // A file that is not there was mistyped: bad input, not a failure.
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("{}: no such compose file", path.display()))
        }
        _ => Error::io(path, e),
    })?;
    parse(&text, path, options)
}

/// Reads a compose file's `text`; `path` is where it is, for resolving
/// relative paths and `env_file`s and for naming it in errors and
/// findings.
pub fn parse(text: &str, path: &Path, options: &ComposeOptions) -> Result<Stack> {
    let mut reader = Reader::new(text, path, options)?;
    let project = reader.project()?;
    let volumes = reader.volumes(&project)?;
    let services = reader.services(&volumes)?;
    Ok(Stack {
        origin: Origin::Compose {
            file: path.to_path_buf(),
        },
        project: Some(project),
        services,
        volumes,
        warnings: reader.warnings,
    })
}

struct Reader<'a> {
    path: &'a Path,
    /// The compose file's directory, absolute.
    dir: PathBuf,
    options: &'a ComposeOptions,
    outline: Outline<'a>,
    doc: Mapping,
    warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    /// Parses the YAML, applies merge keys and interpolates.
    fn new(text: &'a str, path: &'a Path, options: &'a ComposeOptions) -> Result<Self> {
        let parent = path.parent().unwrap_or_else(|| Path::new(""));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let dir = normalize(&std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf()));
        let mut reader = Self {
            path,
            dir,
            options,
            outline: Outline::new(text),
            doc: Mapping::new(),
            warnings: Vec::new(),
        };
        let mut doc: Value = serde_norway::from_str(text)
            .map_err(|e| reader.error(None, format!("not valid YAML: {e}")))?;
        doc.apply_merge()
            .map_err(|e| reader.error(None, format!("not valid YAML: {e}")))?;
        let mut interpolator = Interpolator::new(&options.variables);
        let mut key_path = Vec::new();
        reader.interpolate(&mut doc, &mut key_path, &mut interpolator)?;
        for name in interpolator.unset() {
            reader.warnings.push(format!(
                "{}: the variable {name} is not set: it reads as an empty string",
                path.display()
            ));
        }
        reader.doc = match doc {
            Value::Mapping(m) => m,
            Value::Null => return Err(reader.error(None, "is empty: not a compose file".into())),
            _ => {
                return Err(reader.error(
                    Some(1),
                    "not a compose file: the top level must be a mapping".into(),
                ));
            }
        };
        Ok(reader)
    }

    fn error(&self, line: Option<usize>, message: String) -> Error {
        match line {
            Some(line) => Error::BadRequest(format!("{}:{line}: {message}", self.path.display())),
            None => Error::BadRequest(format!("{}: {message}", self.path.display())),
        }
    }

    /// Expands variables in every string value, except under `x-` keys
    /// (extensions are nobody's business but their owner's). Tags such as
    /// compose's `!reset` are dropped to their values.
    fn interpolate(
        &self,
        value: &mut Value,
        key_path: &mut Vec<String>,
        interpolator: &mut Interpolator<'_>,
    ) -> Result<()> {
        match value {
            Value::Tagged(tagged) => {
                *value = std::mem::take(&mut tagged.value);
                self.interpolate(value, key_path, interpolator)
            }
            Value::String(s) => {
                *s = interpolator.expand(s).map_err(|message| {
                    let keys: Vec<&str> = key_path.iter().map(String::as_str).collect();
                    self.error(
                        self.outline.key(&keys),
                        format!("{}: {message}", keys.join(".")),
                    )
                })?;
                Ok(())
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    key_path.push(i.to_string());
                    self.interpolate(item, key_path, interpolator)?;
                    key_path.pop();
                }
                Ok(())
            }
            Value::Mapping(map) => {
                for (key, item) in map.iter_mut() {
                    let key = scalar(key).unwrap_or_default();
                    if key.starts_with("x-") {
                        continue;
                    }
                    key_path.push(key);
                    self.interpolate(item, key_path, interpolator)?;
                    key_path.pop();
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    /// The project name, as compose picks it.
    fn project(&self) -> Result<String> {
        let from_env = self
            .options
            .variables
            .get("COMPOSE_PROJECT_NAME")
            .filter(|n| !n.is_empty())
            .cloned();
        let from_dir = || {
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        };
        let raw = self
            .options
            .project_name
            .clone()
            .or(from_env)
            .or_else(|| self.doc.get("name").and_then(scalar))
            .or_else(from_dir)
            .unwrap_or_default();
        let name = project_name(&raw);
        if name.is_empty() {
            return Err(self.error(
                None,
                format!("cannot make a project name of {raw:?}: name the project with `name:` in the file"),
            ));
        }
        Ok(name)
    }

    /// The top-level `volumes`.
    fn volumes(&self, project: &str) -> Result<Vec<VolumeDecl>> {
        let Some(section) = self.doc.get("volumes") else {
            return Ok(Vec::new());
        };
        let map = match section {
            Value::Null => return Ok(Vec::new()),
            Value::Mapping(m) => m,
            _ => {
                return Err(self.error(
                    self.outline.key(&["volumes"]),
                    "volumes: must be a mapping of volume names".into(),
                ));
            }
        };
        let mut decls = Vec::new();
        for (key, value) in map {
            let Some(key) = scalar(key) else { continue };
            if key.starts_with("x-") {
                continue;
            }
            let line = self.outline.key(&["volumes", &key]);
            let decl = match value {
                Value::Null => Mapping::new(),
                Value::Mapping(m) => m.clone(),
                _ => return Err(self.error(line, format!("volumes.{key}: must be a mapping"))),
            };
            let declared_name = decl.get("name").and_then(scalar);
            let (external, external_name) = match decl.get("external") {
                Some(Value::Mapping(m)) => (true, m.get("name").and_then(scalar)),
                Some(v) => (
                    truth(v).ok_or_else(|| {
                        self.error(
                            line,
                            format!("volumes.{key}.external: expected true or false"),
                        )
                    })?,
                    None,
                ),
                None => (false, None),
            };
            let name = if external {
                external_name
                    .or(declared_name)
                    .unwrap_or_else(|| key.clone())
            } else {
                declared_name.unwrap_or_else(|| format!("{project}_{key}"))
            };
            decls.push(VolumeDecl {
                exists: self
                    .options
                    .existing_volumes
                    .as_ref()
                    .map(|names| names.contains(&name)),
                driver: decl.get("driver").and_then(scalar),
                driver_opts: string_map(decl.get("driver_opts")),
                labels: string_map(decl.get("labels")),
                key,
                name,
                external,
                line,
                ..VolumeDecl::default()
            });
        }
        Ok(decls)
    }

    /// The services.
    fn services(&mut self, volumes: &[VolumeDecl]) -> Result<Vec<Service>> {
        let map = match self.doc.get("services") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Mapping(m)) => m.clone(),
            Some(_) => {
                return Err(self.error(
                    self.outline.key(&["services"]),
                    "services: must be a mapping of service names".into(),
                ));
            }
        };
        if self.doc.contains_key("include") {
            self.warnings.push(format!(
                "{}: `include` is not followed: audit the included files on their own",
                self.path.display()
            ));
        }
        let mut services = Vec::new();
        for (key, value) in &map {
            let Some(name) = scalar(key) else { continue };
            if name.starts_with("x-") {
                continue;
            }
            services.push(self.service(&name, value, volumes)?);
        }
        for i in 0..services.len() {
            let borrowed =
                self.volumes_from(&services[i], map.get(services[i].name.as_str()), &services)?;
            services[i].mounts.extend(borrowed);
        }
        Ok(services)
    }

    /// The mounts a service takes from others with `volumes_from:
    /// [other, other:ro]`, as the other service declares them (one level:
    /// what the other takes in turn is not followed).
    fn volumes_from(
        &mut self,
        service: &Service,
        def: Option<&Value>,
        all: &[Service],
    ) -> Result<Vec<Mount>> {
        let entries = strings(def.and_then(|d| d.get("volumes_from")));
        let mut mounts = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let line = self
                .outline
                .item(&["services", &service.name, "volumes_from"], i)
                .or(service.line);
            let (source, mode) = entry.split_once(':').unwrap_or((entry, ""));
            if source == "container" {
                self.warnings.push(format!(
                    "{}: service {}: volumes_from {entry} names a container: its volumes are not checked",
                    self.path.display(),
                    service.name
                ));
                continue;
            }
            let other = all.iter().find(|s| s.name == source).ok_or_else(|| {
                self.error(
                    line,
                    format!(
                        "service {} takes volumes from undefined service {source}",
                        service.name
                    ),
                )
            })?;
            mounts.extend(other.mounts.iter().map(|m| Mount {
                read_only: m.read_only || mode == "ro",
                line,
                ..m.clone()
            }));
        }
        Ok(mounts)
    }

    fn service(&mut self, name: &str, value: &Value, volumes: &[VolumeDecl]) -> Result<Service> {
        let line = self.outline.key(&["services", name]);
        let empty = Mapping::new();
        let def = match value {
            Value::Mapping(m) => m,
            Value::Null => &empty,
            _ => return Err(self.error(line, format!("services.{name}: must be a mapping"))),
        };
        if def.contains_key("extends") {
            self.warnings.push(format!(
                "{}: service {name}: `extends` is not followed: the mounts it brings in are not checked",
                self.path.display()
            ));
        }
        let replicas = def
            .get("deploy")
            .and_then(|d| d.get("replicas"))
            .or_else(|| def.get("scale"))
            .map(|v| {
                scalar(v)
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| {
                        self.error(
                            line,
                            format!("services.{name}: replicas must be a whole number"),
                        )
                    })
            })
            .transpose()?
            .unwrap_or(1);
        let mut service = Service {
            name: name.to_string(),
            image: def.get("image").and_then(scalar),
            user: def.get("user").and_then(scalar),
            group_add: strings(def.get("group_add")),
            running: None,
            replicas,
            environment: self.environment(name, def)?,
            entrypoint: words(def.get("entrypoint")),
            command: words(def.get("command")),
            labels: string_map(def.get("labels")),
            depends_on: match def.get("depends_on") {
                Some(Value::Mapping(m)) => m.keys().filter_map(scalar).collect(),
                other => strings(other),
            },
            mounts: Vec::new(),
            image_volumes: None,
            line,
        };
        service.mounts = self.mounts(name, def, volumes)?;
        // No image is asked here; what the official database images
        // declare is known.
        service.image_volumes = rules::official_volumes(&service);
        Ok(service)
    }

    /// `env_file`s, then `environment` over them.
    fn environment(&mut self, service: &str, def: &Mapping) -> Result<BTreeMap<String, String>> {
        let mut env = BTreeMap::new();
        let files: Vec<(String, bool)> = match def.get("env_file") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .filter_map(|item| match item {
                    Value::Mapping(m) => Some((
                        m.get("path").and_then(scalar)?,
                        m.get("required").and_then(truth).unwrap_or(true),
                    )),
                    other => scalar(other).map(|p| (p, true)),
                })
                .collect(),
            Some(other) => scalar(other).map(|p| (p, true)).into_iter().collect(),
        };
        for (file, required) in files {
            let path = self.dir.join(&file);
            match read_dotenv(&path, &self.options.variables) {
                Ok(vars) => env.extend(vars),
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    if required {
                        self.warnings.push(format!(
                            "{}: service {service}: env_file {} does not exist",
                            self.path.display(),
                            path.display()
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match def.get("environment") {
            Some(Value::Sequence(items)) => {
                for item in items.iter().filter_map(scalar) {
                    match item.split_once('=') {
                        Some((k, v)) => {
                            env.insert(k.to_string(), v.to_string());
                        }
                        None => {
                            if let Some(v) = self.options.variables.get(&item) {
                                env.insert(item, v.clone());
                            }
                        }
                    }
                }
            }
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Some(k) = scalar(k) else { continue };
                    let v = match v {
                        Value::Null => self.options.variables.get(&k).cloned(),
                        other => scalar(other),
                    };
                    if let Some(v) = v {
                        env.insert(k, v);
                    }
                }
            }
            _ => {}
        }
        Ok(env)
    }

    /// `volumes` and `tmpfs` of a service.
    fn mounts(
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
struct VolumeSpec {
    /// `volume`, `bind`, `tmpfs`, `npipe` or what else the file says.
    kind: String,
    source: Option<String>,
    target: String,
    read_only: bool,
    tmpfs_size: Option<TmpfsSize>,
}

/// The short syntax, `[SOURCE:]TARGET[:MODE]`, split as compose splits it:
/// one part is a target (an anonymous volume), two are source and target.
/// A source starting with `.`, `/` or `~` is a bind mount.
fn parse_short(spec: &str) -> std::result::Result<VolumeSpec, String> {
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
fn is_windows_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/')
}

/// The long syntax: `type`, `source`, `target`, `read_only`, `tmpfs.size`.
fn parse_long(m: &Mapping) -> std::result::Result<VolumeSpec, String> {
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

/// A project name as compose makes one: lowercase letters, digits, `-`
/// and `_`, starting with a letter or digit.
fn project_name(raw: &str) -> String {
    raw.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .skip_while(|c| matches!(c, '-' | '_'))
        .collect()
}

/// `.` and `..` removed without looking at the file system (a bind source
/// may not exist where the audit runs).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A scalar as a string: YAML's `user: 1000` is the string `1000`.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean, written as YAML's or as a string (an interpolated value).
fn truth(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A list of scalars, or one scalar as a list.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A command or entrypoint: a list of words, or a string to split.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => super::shell::split_words(s),
        other => strings(other),
    }
}

/// A mapping of strings, written as a mapping or as `KEY=VALUE` items.
fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    match value {
        Some(Value::Mapping(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((scalar(k)?, scalar(v).unwrap_or_default())))
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(scalar)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item, String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(vars: &[(&str, &str)]) -> ComposeOptions {
        ComposeOptions {
            variables: vars
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..ComposeOptions::default()
        }
    }

    fn read(text: &str) -> Result<Stack> {
        parse(
            text,
            Path::new("/srv/shop/compose.yaml"),
            &options(&[("HOME", "/home/ada")]),
        )
    }

    fn error_of(text: &str) -> String {
        read(text).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn short_syntax_is_split_as_compose_splits_it() {
        let spec = |s: &str| parse_short(s).map(|v| (v.kind, v.source, v.target, v.read_only));
        assert_eq!(
            spec("pgdata:/var/lib/postgresql/data"),
            Ok((
                "volume".into(),
                Some("pgdata".into()),
                "/var/lib/postgresql/data".into(),
                false
            ))
        );
        assert_eq!(
            spec("./nginx.conf:/etc/nginx/nginx.conf:ro"),
            Ok((
                "bind".into(),
                Some("./nginx.conf".into()),
                "/etc/nginx/nginx.conf".into(),
                true
            ))
        );
        assert_eq!(
            spec("/srv/www:/usr/share/nginx/html:rw,z"),
            Ok((
                "bind".into(),
                Some("/srv/www".into()),
                "/usr/share/nginx/html".into(),
                false
            ))
        );
        assert_eq!(
            spec("/var/lib/mysql"),
            Ok(("volume".into(), None, "/var/lib/mysql".into(), false))
        );
        assert_eq!(
            spec("~/.ssh:/root/.ssh:z,ro"),
            Ok((
                "bind".into(),
                Some("~/.ssh".into()),
                "/root/.ssh".into(),
                true
            ))
        );
        assert_eq!(
            spec("C:\\data:/data:ro"),
            Ok(("bind".into(), Some("C:\\data".into()), "/data".into(), true))
        );
        assert_eq!(
            spec("d:/cache:/cache"),
            Ok((
                "bind".into(),
                Some("d:/cache".into()),
                "/cache".into(),
                false
            ))
        );
        assert!(spec("a:b:ro:x").is_err());
        assert!(spec("a::b").is_err());
    }

    #[test]
    fn long_syntax_reads_types_options_and_sizes() -> Result<()> {
        let stack = read(
            r#"
services:
  app:
    image: example/app
    volumes:
      - type: volume
        source: data
        target: /data
        volume: {nocopy: true}
      - type: bind
        source: ./conf
        target: /etc/app
        read_only: true
        bind: {create_host_path: true}
      - type: tmpfs
        target: /cache
        tmpfs: {size: 64m}
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1048576}
      - type: volume
        target: /anon
      - type: npipe
        source: \\.\pipe\docker_engine
        target: \\.\pipe\docker_engine
      - source: /var/log
        target: /logs
        read_only: "false"
volumes:
  data:
"#,
        )?;
        let m = &stack.services[0].mounts;
        assert_eq!(m.len(), 7);
        assert_eq!(
            (m[0].kind, m[0].source.as_deref()),
            (MountType::Volume, Some("shop_data"))
        );
        assert_eq!(
            (m[1].kind, m[1].source.as_deref()),
            (MountType::Bind, Some("/srv/shop/conf"))
        );
        assert!(m[1].read_only);
        assert_eq!(
            (m[2].kind, m[2].tmpfs_size),
            (MountType::Tmpfs, Some(TmpfsSize::Bytes(64 << 20)))
        );
        assert_eq!(m[3].tmpfs_size, Some(TmpfsSize::Bytes(1 << 20)));
        assert_eq!(
            (m[4].kind, m[4].source.as_deref()),
            (MountType::Anonymous, None)
        );
        assert_eq!(m[5].kind, MountType::Npipe);
        assert_eq!((m[6].kind, m[6].read_only), (MountType::Bind, false));
        Ok(())
    }

    #[test]
    fn service_tmpfs_takes_a_string_or_a_list_with_sizes() -> Result<()> {
        let stack = read(
            "services:\n  a:\n    image: x\n    tmpfs: /run\n  b:\n    image: x\n    tmpfs:\n      - /run:size=64m,mode=1777\n      - /tmp:mode=1777\n      - /zero:size=0\n      - /half:size=50%\n",
        )?;
        let a = &stack.services[0].mounts;
        assert_eq!(
            (a[0].kind, a[0].target.as_str(), a[0].tmpfs_size),
            (MountType::Tmpfs, "/run", None)
        );
        let b: Vec<(&str, Option<TmpfsSize>)> = stack.services[1]
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.tmpfs_size))
            .collect();
        assert_eq!(
            b,
            [
                ("/run", Some(TmpfsSize::Bytes(64 << 20))),
                ("/tmp", None),
                ("/zero", None),
                ("/half", Some(TmpfsSize::Percent(50)))
            ]
        );
        Ok(())
    }

    #[test]
    fn bind_sources_resolve_against_the_compose_file() -> Result<()> {
        let stack = read(
            "services:\n  a:\n    image: x\n    volumes:\n      - ./conf/../site:/site\n      - ../shared:/shared\n      - ~/notes:/notes\n      - /abs/./path/:/abs\n",
        )?;
        let sources: Vec<&str> = stack.services[0]
            .mounts
            .iter()
            .filter_map(|m| m.source.as_deref())
            .collect();
        assert_eq!(
            sources,
            [
                "/srv/shop/site",
                "/srv/shared",
                "/home/ada/notes",
                "/abs/path"
            ]
        );
        Ok(())
    }

    #[test]
    fn named_volumes_get_the_engines_names() -> Result<()> {
        let stack = read(
            r#"
services:
  app:
    image: x
    volumes: [plain:/a, named:/b, ext:/c, legacy:/d, extnamed:/e]
volumes:
  plain:
  named:
    name: exact-name
    driver: local
    driver_opts: {type: nfs, o: "addr=10.0.0.1,rw", device: ":/export"}
    labels: [lifeboat.protect=true]
  ext:
    external: true
  legacy:
    external: {name: old-style}
  extnamed:
    external: true
    name: shared-data
"#,
        )?;
        let names: Vec<(&str, &str, bool)> = stack
            .volumes
            .iter()
            .map(|v| (v.key.as_str(), v.name.as_str(), v.external))
            .collect();
        assert_eq!(
            names,
            [
                ("plain", "shop_plain", false),
                ("named", "exact-name", false),
                ("ext", "ext", true),
                ("legacy", "old-style", true),
                ("extnamed", "shared-data", true),
            ]
        );
        let named = stack.volume("exact-name").expect("declared");
        assert_eq!(named.driver.as_deref(), Some("local"));
        assert_eq!(named.driver_opts["o"], "addr=10.0.0.1,rw");
        assert_eq!(named.labels["lifeboat.protect"], "true");
        assert_eq!(named.exists, None);
        let sources: Vec<&str> = stack.services[0]
            .mounts
            .iter()
            .filter_map(|m| m.source.as_deref())
            .collect();
        assert_eq!(
            sources,
            [
                "shop_plain",
                "exact-name",
                "ext",
                "old-style",
                "shared-data"
            ]
        );
        Ok(())
    }

    #[test]
    fn the_project_name_comes_from_flag_env_file_or_directory() -> Result<()> {
        let text = "name: From-File\nservices: {}\n";
        let path = Path::new("/srv/My Shop/compose.yaml");
        let with = |opts: ComposeOptions| parse(text, path, &opts).map(|s| s.project);
        let mut opts = options(&[("COMPOSE_PROJECT_NAME", "fromenv")]);
        opts.project_name = Some("flag".into());
        assert_eq!(with(opts)?.as_deref(), Some("flag"));
        assert_eq!(
            with(options(&[("COMPOSE_PROJECT_NAME", "fromenv")]))?.as_deref(),
            Some("fromenv")
        );
        assert_eq!(with(options(&[]))?.as_deref(), Some("from-file"));
        let unnamed = parse("services: {}\n", path, &options(&[]))?;
        assert_eq!(unnamed.project.as_deref(), Some("myshop"));
        Ok(())
    }

    #[test]
    fn variables_are_interpolated_everywhere_but_extensions() -> Result<()> {
        let stack = parse(
            r#"
x-notes: "${NOT_CHECKED:?extensions are skipped}"
services:
  db:
    image: "postgres:${PG_TAG:-16-alpine}"
    user: "${UID}:${GID-999}"
    environment:
      PGDATA: ${PGDATA:-/var/lib/postgresql/data}
      COST: "$$5"
    volumes:
      - ${DATA_DIR}/pg:/var/lib/postgresql/data
      - type: bind
        source: ${CONF:-./conf}
        target: /etc/postgresql
        read_only: ${RO:-true}
"#,
            Path::new("/srv/shop/compose.yaml"),
            &options(&[("UID", "1000"), ("DATA_DIR", "/mnt/fast")]),
        )?;
        let db = &stack.services[0];
        assert_eq!(db.image.as_deref(), Some("postgres:16-alpine"));
        assert_eq!(db.user.as_deref(), Some("1000:999"));
        assert_eq!(db.environment["PGDATA"], "/var/lib/postgresql/data");
        assert_eq!(db.environment["COST"], "$5");
        assert_eq!(db.mounts[0].source.as_deref(), Some("/mnt/fast/pg"));
        assert_eq!(db.mounts[1].source.as_deref(), Some("/srv/shop/conf"));
        assert!(db.mounts[1].read_only);
        assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);
        Ok(())
    }

    #[test]
    fn unset_variables_warn_and_required_ones_fail_with_the_line() -> Result<()> {
        let stack = read("services:\n  a:\n    image: app:$TAG\n")?;
        assert_eq!(stack.services[0].image.as_deref(), Some("app:"));
        assert_eq!(
            stack.warnings,
            ["/srv/shop/compose.yaml: the variable TAG is not set: it reads as an empty string"]
        );
        assert_eq!(
            error_of(
                "services:\n  a:\n    image: x\n    environment:\n      PASSWORD: ${PASSWORD:?set PASSWORD in .env}\n"
            ),
            "/srv/shop/compose.yaml:5: services.a.environment.PASSWORD: required variable PASSWORD is missing a value: set PASSWORD in .env"
        );
        Ok(())
    }

    #[test]
    fn services_read_users_commands_replicas_and_dependencies() -> Result<()> {
        let stack = read(
            r#"
x-common: &common
  labels:
    lifeboat.audit.ignore: LB005
  restart: unless-stopped
services:
  cache:
    <<: *common
    image: redis:7
    user: 999
    group_add: [100, video]
    command: redis-server --save "" --appendonly no
    depends_on: [db]
    scale: 2
  db:
    image: postgres:16
    entrypoint: /usr/local/bin/docker-entrypoint.sh
    command: ["postgres", "-c", "fsync=on"]
    depends_on:
      init: {condition: service_completed_successfully}
    deploy:
      replicas: 3
    labels: ["a=1", "b"]
  init:
    image: busybox
"#,
        )?;
        let cache = stack.service("cache").expect("cache");
        assert_eq!(cache.user.as_deref(), Some("999"));
        assert_eq!(cache.group_add, ["100", "video"]);
        assert_eq!(
            cache.command,
            ["redis-server", "--save", "", "--appendonly", "no"]
        );
        assert_eq!(cache.depends_on, ["db"]);
        assert_eq!(cache.replicas, 2);
        assert_eq!(cache.labels["lifeboat.audit.ignore"], "LB005");
        let db = stack.service("db").expect("db");
        assert_eq!(db.entrypoint, ["/usr/local/bin/docker-entrypoint.sh"]);
        assert_eq!(db.command, ["postgres", "-c", "fsync=on"]);
        assert!(cache.entrypoint.is_empty());
        assert_eq!(db.depends_on, ["init"]);
        assert_eq!(db.replicas, 3);
        assert_eq!(db.labels["b"], "");
        assert_eq!(stack.service("init").map(|s| s.replicas), Some(1));
        assert_eq!(stack.services.len(), 3);
        Ok(())
    }

    #[test]
    fn environment_reads_lists_maps_and_env_files() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        std::fs::write(dir.path().join("db.env"), "PGDATA=/from/file\nOTHER=file\n")
            .map_err(|e| Error::io("db.env", e))?;
        let path = dir.path().join("compose.yaml");
        let stack = parse(
            r#"
services:
  a:
    image: x
    env_file: db.env
    environment: [PGDATA=/from/list, FROM_SHELL, MISSING]
  b:
    image: x
    env_file:
      - path: ./missing.env
        required: false
      - db.env
      - nothere.env
    environment:
      OTHER: map
      FROM_SHELL:
"#,
            &path,
            &options(&[("FROM_SHELL", "shell")]),
        )?;
        let a = &stack.services[0].environment;
        assert_eq!(a["PGDATA"], "/from/list");
        assert_eq!(a["OTHER"], "file");
        assert_eq!(a["FROM_SHELL"], "shell");
        assert!(!a.contains_key("MISSING"));
        let b = &stack.services[1].environment;
        assert_eq!(b["PGDATA"], "/from/file");
        assert_eq!(b["OTHER"], "map");
        assert_eq!(b["FROM_SHELL"], "shell");
        assert_eq!(stack.warnings.len(), 1, "{:?}", stack.warnings);
        assert!(stack.warnings[0].contains("nothere.env does not exist"));
        Ok(())
    }

    #[test]
    fn lines_point_at_services_mounts_and_volumes() -> Result<()> {
        let stack = read(
            "services:\n  db:\n    image: postgres\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n      - type: tmpfs\n        target: /run\n    tmpfs:\n      - /tmp\nvolumes:\n  pgdata:\n",
        )?;
        let db = &stack.services[0];
        assert_eq!(db.line, Some(2));
        let lines: Vec<Option<usize>> = db.mounts.iter().map(|m| m.line).collect();
        assert_eq!(lines, [Some(5), Some(6), Some(9)]);
        assert_eq!(stack.volumes[0].line, Some(11));
        Ok(())
    }

    #[test]
    fn files_that_are_not_compose_files_are_errors_naming_them() {
        assert_eq!(
            error_of("services:\n  db:\n    image: [unclosed\n"),
            "/srv/shop/compose.yaml: not valid YAML: did not find expected ',' or ']' at line 4 column 1, while parsing a flow sequence at line 3 column 12"
        );
        assert_eq!(
            error_of(""),
            "/srv/shop/compose.yaml: is empty: not a compose file"
        );
        assert_eq!(
            error_of("- a\n- b\n"),
            "/srv/shop/compose.yaml:1: not a compose file: the top level must be a mapping"
        );
        assert_eq!(
            error_of("services: [db]\n"),
            "/srv/shop/compose.yaml:1: services: must be a mapping of service names"
        );
        assert_eq!(
            error_of("services:\n  db: postgres\n"),
            "/srv/shop/compose.yaml:2: services.db: must be a mapping"
        );
        assert_eq!(
            error_of(
                "services:\n  db:\n    image: postgres\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n"
            ),
            "/srv/shop/compose.yaml:5: service db refers to undefined volume pgdata: declare it under the top-level `volumes:`"
        );
        assert_eq!(
            error_of("services:\n  db:\n    image: postgres\n    volumes:\n      - a:b:c:d\n"),
            "/srv/shop/compose.yaml:5: services.db.volumes[0]: \"a:b:c:d\": too many colons"
        );
        assert_eq!(
            error_of("services:\n  db:\n    volumes:\n      - type: bind\n        source: ./x\n"),
            "/srv/shop/compose.yaml:4: services.db.volumes[0]: a volume needs a target"
        );
        assert_eq!(
            error_of("services:\n  db:\n    volumes: pgdata\n"),
            "/srv/shop/compose.yaml:3: services.db.volumes: must be a list"
        );
        assert_eq!(
            error_of("volumes:\n  v:\n    external: maybe\n"),
            "/srv/shop/compose.yaml:2: volumes.v.external: expected true or false"
        );
        assert_eq!(
            error_of("services:\n  db:\n    scale: many\n"),
            "/srv/shop/compose.yaml:2: services.db: replicas must be a whole number"
        );
    }

    #[test]
    fn unfollowed_features_and_unknown_mount_types_warn() -> Result<()> {
        let stack = read(
            "include: [other.yaml]\nservices:\n  a:\n    extends: {service: base}\n    volumes_from: [\"container:data\"]\n    volumes:\n      - type: image\n        source: alpine\n        target: /img\n",
        )?;
        assert_eq!(stack.warnings.len(), 4, "{:?}", stack.warnings);
        assert!(stack.services[0].mounts.is_empty());
        Ok(())
    }

    #[test]
    fn volumes_from_brings_in_the_other_services_mounts() -> Result<()> {
        let stack = read(
            "services:\n  data:\n    image: busybox\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n      - ./conf:/conf:ro\n  db:\n    image: postgres:16\n    volumes_from:\n      - data\n  reader:\n    image: busybox\n    volumes_from: [\"data:ro\"]\nvolumes:\n  pgdata:\n",
        )?;
        let db = stack.service("db").expect("db");
        let mounts: Vec<(&str, bool, Option<usize>)> = db
            .mounts
            .iter()
            .map(|m| (m.target.as_str(), m.read_only, m.line))
            .collect();
        assert_eq!(
            mounts,
            [
                ("/var/lib/postgresql/data", false, Some(10)),
                ("/conf", true, Some(10))
            ]
        );
        assert_eq!(db.mounts[0].source.as_deref(), Some("shop_pgdata"));
        let reader = stack.service("reader").expect("reader");
        assert!(reader.mounts.iter().all(|m| m.read_only));
        assert_eq!(
            error_of("services:\n  db:\n    image: postgres\n    volumes_from: [ghost]\n"),
            "/srv/shop/compose.yaml:2: service db takes volumes from undefined service ghost"
        );
        Ok(())
    }

    #[test]
    fn existing_volumes_are_known_when_given() -> Result<()> {
        let mut opts = options(&[]);
        opts.existing_volumes = Some(["shop_here".to_string()].into());
        let stack = parse(
            "services: {}\nvolumes:\n  here:\n  gone:\n    external: true\n",
            Path::new("/srv/shop/compose.yaml"),
            &opts,
        )?;
        let exists: Vec<Option<bool>> = stack.volumes.iter().map(|v| v.exists).collect();
        assert_eq!(exists, [Some(true), Some(false)]);
        Ok(())
    }
}
