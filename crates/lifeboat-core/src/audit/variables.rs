//! Compose variables: `.env` files and `${VAR}` interpolation, as
//! `docker compose` reads them.
//!
//! Interpolation knows `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+other}`,
//! `${VAR+other}` and the `$$` escape; defaults may themselves hold
//! variables. A `.env` file is `KEY=VALUE` lines with `#` comments, an
//! optional `export ` prefix, single quotes (literal), double quotes
//! (escapes, may span lines) and unquoted values (inline ` #` comments);
//! double-quoted and unquoted values are interpolated with the keys above
//! them and then the outer variables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::error::{Error, Result};

/// Answers the value of a variable, or `None` when it is not set.
type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Expands variables in compose values, remembering the ones that were
/// used without being set (compose warns about those and uses "").
pub struct Interpolator<'a> {
    lookup: Lookup<'a>,
    unset: BTreeSet<String>,
}

impl<'a> Interpolator<'a> {
    /// An interpolator over `variables`.
    pub fn new(variables: &'a BTreeMap<String, String>) -> Self {
        Self::with_lookup(move |name| variables.get(name).cloned())
    }

    fn with_lookup(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
            unset: BTreeSet::new(),
        }
    }

    /// The variables used without a value and without a default so far.
    pub fn unset(&self) -> &BTreeSet<String> {
        &self.unset
    }

    /// `input` with its variables expanded. The error says what is wrong
    /// in words; the caller adds where.
    pub fn expand(&mut self, input: &str) -> std::result::Result<String, String> {
        let mut out = String::with_capacity(input.len());
        let mut rest = input;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(next) = after.strip_prefix('$') {
                out.push('$');
                rest = next;
            } else if let Some(body) = after.strip_prefix('{') {
                let end = closing_brace(body).ok_or_else(|| {
                    format!("invalid interpolation format in {input:?}: `${{` is never closed")
                })?;
                out.push_str(&self.braced(&body[..end], input)?);
                rest = &body[end + 1..];
            } else {
                let len = name_len(after);
                if len == 0 {
                    return Err(format!(
                        "invalid interpolation format in {input:?}: `$` must start a variable name, `${{...}}` or `$$`"
                    ));
                }
                out.push_str(&self.plain(&after[..len]));
                rest = &after[len..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn plain(&mut self, name: &str) -> String {
        (self.lookup)(name).unwrap_or_else(|| {
            self.unset.insert(name.to_string());
            String::new()
        })
    }

    fn braced(&mut self, body: &str, input: &str) -> std::result::Result<String, String> {
        let len = name_len(body);
        if len == 0 {
            return Err(format!(
                "invalid interpolation format in {input:?}: no variable name in `${{{body}}}`"
            ));
        }
        let (name, op) = body.split_at(len);
        let value = (self.lookup)(name);
        let set = value.is_some();
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let (present, arg) = if let Some(arg) = op.strip_prefix(":-") {
            (non_empty, Some(("-", arg)))
        } else if let Some(arg) = op.strip_prefix(":?") {
            (non_empty, Some(("?", arg)))
        } else if let Some(arg) = op.strip_prefix(":+") {
            (non_empty, Some(("+", arg)))
        } else if let Some(arg) = op.strip_prefix('-') {
            (set, Some(("-", arg)))
        } else if let Some(arg) = op.strip_prefix('?') {
            (set, Some(("?", arg)))
        } else if let Some(arg) = op.strip_prefix('+') {
            (set, Some(("+", arg)))
        } else if op.is_empty() {
            return Ok(self.plain(name));
        } else {
            return Err(format!(
                "invalid interpolation format in {input:?}: unknown operator in `${{{body}}}`"
            ));
        };
        match arg {
            Some(("-", default)) if !present => self.expand(default),
            Some(("?", message)) if !present => {
                let message = self.expand(message)?;
                Err(if message.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {message}")
                })
            }
            Some(("+", other)) => {
                if present {
                    self.expand(other)
                } else {
                    Ok(String::new())
                }
            }
            _ => Ok(value.unwrap_or_default()),
        }
    }
}

impl std::fmt::Debug for Interpolator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpolator")
            .field("unset", &self.unset)
            .finish_non_exhaustive()
    }
}

/// The length of the variable name at the start of `s`:
/// `[A-Za-z_][A-Za-z0-9_]*`.
fn name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, b) in s.bytes().enumerate() {
        let ok = b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + 1;
    }
    len
}

/// The index of the `}` closing a `${` whose body starts `body`, skipping
/// nested `${...}` and `$$`.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'$') => i += 1,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parses the text of a `.env` file. `outer` answers for variables the file
/// uses but does not set itself. Errors give the 1-based line.
pub fn parse_dotenv(
    text: &str,
    outer: &BTreeMap<String, String>,
) -> std::result::Result<Vec<(String, String)>, (usize, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let number = index + 1;
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            // A bare name takes its value from outside, as in env files.
            let key = line.trim();
            if !valid_key(key) {
                return Err((number, format!("expected KEY=VALUE, found {line:?}")));
            }
            if let Some(value) = outer.get(key) {
                pairs.push((key.to_string(), value.clone()));
            }
            continue;
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err((number, format!("invalid variable name {key:?}")));
        }
        let value =
            dotenv_value(value.trim_start(), &pairs, outer, &mut lines).map_err(|e| (number, e))?;
        pairs.retain(|(k, _)| k != key);
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

/// The value of one `.env` line (and of the lines a quoted value spans),
/// interpolated unless single-quoted.
fn dotenv_value<'a>(
    value: &'a str,
    earlier: &[(String, String)],
    outer: &BTreeMap<String, String>,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> std::result::Result<String, String> {
    let mut interpolator = Interpolator::with_lookup(|name| {
        earlier
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| outer.get(name).cloned())
    });
    let quote = match value.chars().next() {
        Some(q @ ('\'' | '"')) => q,
        _ => {
            let raw = value.find(" #").map_or(value, |at| &value[..at]);
            return interpolator.expand(raw.trim_end());
        }
    };
    let kind = if quote == '"' { "double" } else { "single" };
    let (raw, after) = quoted_value(&value[1..], quote, lines)
        .ok_or_else(|| format!("{kind} quote is never closed"))?;
    let after = after.trim();
    if !after.is_empty() && !after.starts_with('#') {
        return Err(format!(
            "unexpected {after:?} after the closing {kind} quote"
        ));
    }
    if quote == '"' {
        interpolator.expand(&unescape(&raw))
    } else {
        Ok(raw)
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The text up to the closing `quote` (an escaped `\"` does not close a
/// double-quoted value), reading further lines when the value spans them;
/// and what followed the closing quote.
fn quoted_value<'a>(
    first: &'a str,
    quote: char,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
) -> Option<(String, &'a str)> {
    let mut value = String::new();
    let mut line = first;
    loop {
        let mut escaped = false;
        for (i, c) in line.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && quote == '"' {
                escaped = true;
            } else if c == quote {
                value.push_str(&line[..i]);
                return Some((value, &line[i + c.len_utf8()..]));
            }
        }
        value.push_str(line);
        value.push('\n');
        line = lines.next()?.1;
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            // `\$` stays an escaped dollar for the interpolator.
            Some('$') => out.push_str("$$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Reads a `.env` file: its variables, interpolated with `outer`.
pub fn read_dotenv(
    path: &Path,
    outer: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_dotenv(&text, outer)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|(line, message)| {
            Error::BadRequest(format!("{}:{line}: {message}", path.display()))
        })
}

/// The variables a compose file is interpolated with, as `docker compose`
/// takes them: the `.env` file beside the compose file (when there is
/// one), overridden by the process environment.
pub fn compose_variables(
    compose_file: &Path,
    process_env: impl IntoIterator<Item = (String, String)>,
) -> Result<BTreeMap<String, String>> {
    let process: BTreeMap<String, String> = process_env.into_iter().collect();
    let dotenv = compose_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(".env");
    let mut variables = match read_dotenv(&dotenv, &process) {
        Ok(v) => v,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            BTreeMap::new()
        }
        Err(e) => return Err(e),
    };
    variables.extend(process);
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn expand(input: &str, pairs: &[(&str, &str)]) -> std::result::Result<String, String> {
        let variables = vars(pairs);
        Interpolator::new(&variables).expand(input)
    }

    #[test]
    fn plain_and_braced_variables_expand() {
        let set = [("TAG", "16-alpine"), ("DIR", "/srv"), ("EMPTY", "")];
        assert_eq!(
            expand("postgres:$TAG", &set).as_deref(),
            Ok("postgres:16-alpine")
        );
        assert_eq!(expand("${DIR}/data", &set).as_deref(), Ok("/srv/data"));
        assert_eq!(expand("$DIR/x$EMPTY.y", &set).as_deref(), Ok("/srv/x.y"));
        assert_eq!(expand("no variables", &set).as_deref(), Ok("no variables"));
    }

    #[test]
    fn defaults_distinguish_unset_from_empty() {
        let set = [("EMPTY", "")];
        assert_eq!(expand("${EMPTY:-d}", &set).as_deref(), Ok("d"));
        assert_eq!(expand("${EMPTY-d}", &set).as_deref(), Ok(""));
        assert_eq!(expand("${UNSET:-d}", &set).as_deref(), Ok("d"));
        assert_eq!(expand("${UNSET-d}", &set).as_deref(), Ok("d"));
        assert_eq!(expand("${EMPTY:+alt}", &set).as_deref(), Ok(""));
        assert_eq!(expand("${EMPTY+alt}", &set).as_deref(), Ok("alt"));
        assert_eq!(expand("${UNSET+alt}", &set).as_deref(), Ok(""));
    }

    #[test]
    fn defaults_may_hold_variables_and_braces_nest() {
        let set = [("HOME", "/home/ada"), ("DATA", "/mnt/data")];
        assert_eq!(
            expand("${ROOT:-${HOME}/app}", &set).as_deref(),
            Ok("/home/ada/app")
        );
        assert_eq!(
            expand("${ROOT:-${DIR:-$DATA}}/pg", &set).as_deref(),
            Ok("/mnt/data/pg")
        );
    }

    #[test]
    fn required_variables_fail_with_their_message() {
        let set = [("EMPTY", "")];
        assert_eq!(
            expand("${PASSWORD:?set a password}", &set),
            Err("required variable PASSWORD is missing a value: set a password".to_string())
        );
        assert_eq!(
            expand("${EMPTY:?}", &set),
            Err("required variable EMPTY is missing a value".to_string())
        );
        assert_eq!(expand("${EMPTY?must be set}", &set).as_deref(), Ok(""));
        assert!(expand("${UNSET?must be set}", &set).is_err());
    }

    #[test]
    fn double_dollars_escape() {
        assert_eq!(expand("echo $$HOME", &[]).as_deref(), Ok("echo $HOME"));
        assert_eq!(expand("$${X}", &[]).as_deref(), Ok("${X}"));
        assert_eq!(expand("${X:-$$literal}", &[]).as_deref(), Ok("$literal"));
    }

    #[test]
    fn malformed_templates_are_errors() {
        for bad in ["${", "${X", "cost: 5$", "$-x", "${}", "${1X}", "${X!y}"] {
            let err = expand(bad, &[]).err();
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.starts_with("invalid interpolation format")),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn unset_variables_are_remembered_but_defaults_are_not_unset() -> std::result::Result<(), String>
    {
        let variables = vars(&[("A", "1")]);
        let mut i = Interpolator::new(&variables);
        i.expand("$A ${B} $C ${D:-x} ${E-y}")?;
        let unset: Vec<&str> = i.unset().iter().map(String::as_str).collect();
        assert_eq!(unset, ["B", "C"]);
        Ok(())
    }

    #[test]
    fn dotenv_reads_quotes_comments_and_exports() -> std::result::Result<(), (usize, String)> {
        let text = r#"
# a comment
TAG=16-alpine
export USER_ID = 1000
SINGLE='literal $TAG # not a comment'
DOUBLE="tag is ${TAG}\tand \"quoted\""
INLINE=value # a comment
HASH=a#b
EMPTY=
MULTI="line one
line two"
FROM_OUTSIDE
TAG=17
"#;
        let outer = vars(&[("FROM_OUTSIDE", "yes")]);
        let pairs = parse_dotenv(text, &outer)?;
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        assert_eq!(map["TAG"], "17");
        assert_eq!(map["USER_ID"], "1000");
        assert_eq!(map["SINGLE"], "literal $TAG # not a comment");
        assert_eq!(map["DOUBLE"], "tag is 16-alpine\tand \"quoted\"");
        assert_eq!(map["INLINE"], "value");
        assert_eq!(map["HASH"], "a#b");
        assert_eq!(map["EMPTY"], "");
        assert_eq!(map["MULTI"], "line one\nline two");
        assert_eq!(map["FROM_OUTSIDE"], "yes");
        Ok(())
    }

    #[test]
    fn dotenv_values_see_earlier_keys_before_outer_ones() -> std::result::Result<(), (usize, String)>
    {
        let outer = vars(&[("BASE", "/outer"), ("OTHER", "o")]);
        let pairs = parse_dotenv("BASE=/inner\nDATA=$BASE/data\nO=${OTHER}\n", &outer)?;
        assert_eq!(pairs[1], ("DATA".to_string(), "/inner/data".to_string()));
        assert_eq!(pairs[2], ("O".to_string(), "o".to_string()));
        Ok(())
    }

    #[test]
    fn dotenv_errors_name_the_line() {
        let outer = BTreeMap::new();
        assert_eq!(
            parse_dotenv("A=1\nnot a pair\n", &outer)
                .err()
                .map(|(l, _)| l),
            Some(2)
        );
        assert_eq!(
            parse_dotenv("A=1\n\nB=\"open\n", &outer).err(),
            Some((3, "double quote is never closed".to_string()))
        );
        assert_eq!(
            parse_dotenv("X=${NEEDED:?}\n", &outer).err(),
            Some((1, "required variable NEEDED is missing a value".to_string()))
        );
    }

    #[test]
    fn the_process_environment_overrides_the_env_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let compose = dir.path().join("compose.yaml");
        std::fs::write(dir.path().join(".env"), "TAG=15\nDATA=./data\n")
            .map_err(|e| Error::io("write .env", e))?;
        let variables = compose_variables(&compose, [("TAG".to_string(), "16".to_string())])?;
        assert_eq!(variables["TAG"], "16");
        assert_eq!(variables["DATA"], "./data");

        let empty = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let variables = compose_variables(&empty.path().join("compose.yaml"), [])?;
        assert!(variables.is_empty());

        std::fs::write(dir.path().join(".env"), "TAG=15\n=oops\n")
            .map_err(|e| Error::io("write .env", e))?;
        let err = compose_variables(&compose, []).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.ends_with(".env:2: invalid variable name \"\"")),
            "{err:?}"
        );
        Ok(())
    }
}
