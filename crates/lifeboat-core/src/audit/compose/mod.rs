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

mod mounts;
#[cfg(test)]
mod tests;
mod values;

use super::lines::Outline;
use super::model::{Mount, MountType, Origin, Service, Stack, VolumeDecl};
use super::variables::{Interpolator, read_dotenv};
use crate::error::{Error, Result};
use crate::tmpfs::TmpfsSize;
use values::*;

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
        service.image_volumes = super::images::official_volumes(&service);
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
}
