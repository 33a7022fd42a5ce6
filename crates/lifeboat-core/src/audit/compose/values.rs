//! Plain values of a compose file: scalars, flags, lists, maps, names
//! and paths as compose reads them.

use super::*;

/// A project name as compose makes one: lowercase letters, digits, `-`
/// and `_`, starting with a letter or digit.
pub(super) fn project_name(raw: &str) -> String {
    raw.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .skip_while(|c| matches!(c, '-' | '_'))
        .collect()
}

/// `.` and `..` removed without looking at the file system (a bind source
/// may not exist where the audit runs).
pub(super) fn normalize(path: &Path) -> PathBuf {
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
pub(super) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean, written as YAML's or as a string (an interpolated value).
pub(super) fn truth(value: &Value) -> Option<bool> {
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
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
        None => Vec::new(),
    }
}

/// A command or entrypoint: a list of words, or a string to split.
pub(super) fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => crate::audit::shell::split_words(s),
        other => strings(other),
    }
}

/// A mapping of strings, written as a mapping or as `KEY=VALUE` items.
pub(super) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
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
