//! Findings as SARIF 2.1.0, the format code-scanning tools read.
//!
//! Every rule is listed in the run (so `ruleIndex` is stable whatever was
//! found), each result carries its finding's level, the one-line message, the
//! compose file relative to a base directory and the line when known, and
//! a fingerprint that stays the same while the finding does. Findings from
//! the engine have no file: they point at their container by name.

use std::path::{Component, Path};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::rules::rules;
use super::{Finding, Location};

/// The schema the output declares.
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// How SARIF output is made.
#[derive(Clone, Copy, Debug, Default)]
pub struct SarifOptions<'a> {
    /// The directory file locations are relative to (in CI, the root of
    /// the repository). Paths outside it, when absolute, become `file://`
    /// URIs; relative paths are kept as given.
    pub base: Option<&'a Path>,
    /// Where people can read about lifeboat, for the tool's
    /// `informationUri`.
    pub information_uri: Option<&'a str>,
}

/// The SARIF log of one audit.
pub fn to_sarif(findings: &[Finding], options: &SarifOptions<'_>) -> Value {
    let mut driver = json!({
        "name": "lifeboat",
        "version": env!("CARGO_PKG_VERSION"),
        "rules": rules().iter().map(|r| json!({
            "id": r.id,
            "name": r.name,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.explanation},
            "help": {"text": r.explanation},
            "defaultConfiguration": {"level": r.severity.sarif_level()},
            "properties": {"severity": r.severity.as_str(), "tags": ["persistence"]},
        })).collect::<Vec<_>>(),
    });
    if let Some(uri) = options.information_uri {
        driver["informationUri"] = json!(uri);
    }
    let results: Vec<Value> = findings.iter().map(|f| result(f, options)).collect();
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": driver},
            "results": results,
        }],
    })
}

fn result(finding: &Finding, options: &SarifOptions<'_>) -> Value {
    let uri = match &finding.location {
        Location::Compose { file, .. } => Some(file_uri(file, options.base)),
        Location::Engine { .. } => None,
    };
    let location = match &finding.location {
        Location::Compose { line, .. } => {
            let mut physical = json!({"artifactLocation": {"uri": uri}});
            if let Some(line) = line.filter(|&l| l > 0) {
                physical["region"] = json!({"startLine": line});
            }
            json!({"physicalLocation": physical})
        }
        Location::Engine { container } => json!({
            "logicalLocations": [{
                "name": container.as_deref().unwrap_or(&finding.subject),
                "kind": "resource",
            }],
        }),
    };
    let mut properties = json!({
        "subject": finding.subject,
        "fix": finding.fix,
        "severity": finding.severity.as_str(),
    });
    if let Some(path) = &finding.path {
        properties["path"] = json!(path);
    }
    if let Some(volume) = &finding.volume {
        properties["volume"] = json!(volume);
    }
    json!({
        "ruleId": finding.rule,
        "ruleIndex": rules().iter().position(|r| r.id == finding.rule),
        "level": finding.severity.sarif_level(),
        "message": {"text": finding.message},
        "locations": [location],
        "partialFingerprints": {"lifeboatFinding/v2": fingerprint(finding, uri.as_deref())},
        "properties": properties,
    })
}

/// A hash of what identifies a finding, not of where it is in its file:
/// moving a service in the file keeps its findings' fingerprints, while
/// the same service in two compose files (`uri`, as the result names the
/// file) gets two.
fn fingerprint(finding: &Finding, uri: Option<&str>) -> String {
    let mut hash = Sha256::new();
    for part in [
        uri.unwrap_or_default(),
        finding.rule,
        &finding.subject,
        finding.volume.as_deref().unwrap_or_default(),
        finding.path.as_deref().unwrap_or_default(),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A file path as a URI reference: relative to `base` when inside it,
/// with `/` separators and anything but unreserved characters escaped.
fn file_uri(path: &Path, base: Option<&Path>) -> String {
    let path = base.and_then(|b| path.strip_prefix(b).ok()).unwrap_or(path);
    let mut segments = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => segments.push("..".to_string()),
            Component::Normal(s) => segments.push(escape(&s.to_string_lossy())),
        }
    }
    let joined = segments.join("/");
    if path.is_absolute() {
        format!("file:///{joined}")
    } else {
        joined
    }
}

fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Severity;

    fn finding(rule: &'static str, severity: Severity, location: Location) -> Finding {
        Finding {
            rule,
            severity,
            subject: "db".into(),
            volume: Some("shop_pgdata".into()),
            path: Some("/var/lib/postgresql/data".into()),
            message: "db: something at /var/lib/postgresql/data".into(),
            fix: "do something".into(),
            location,
        }
    }

    fn compose(line: Option<usize>) -> Location {
        Location::Compose {
            file: "/repo/deploy/compose.yaml".into(),
            service: Some("db".into()),
            line,
        }
    }

    #[test]
    fn the_log_has_what_sarif_requires() {
        let findings = [
            finding("LB001", Severity::Critical, compose(Some(12))),
            finding("LB005", Severity::Medium, compose(None)),
            finding(
                "LB007",
                Severity::Low,
                Location::Engine {
                    container: Some("web-1".into()),
                },
            ),
        ];
        let log = to_sarif(
            &findings,
            &SarifOptions {
                base: Some(Path::new("/repo")),
                information_uri: Some("https://lifeboat.example/docs"),
            },
        );
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], SCHEMA_URI);
        let runs = log["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1);
        let driver = &runs[0]["tool"]["driver"];
        assert_eq!(driver["name"], "lifeboat");
        assert_eq!(driver["informationUri"], "https://lifeboat.example/docs");
        let rule_ids: Vec<&str> = driver["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                for field in ["id", "name"] {
                    assert!(r[field].is_string(), "{field} of {r}");
                }
                for field in ["shortDescription", "fullDescription", "help"] {
                    assert!(
                        r[field]["text"].as_str().is_some_and(|t| !t.is_empty()),
                        "{field} of {}",
                        r["id"]
                    );
                }
                let level = r["defaultConfiguration"]["level"].as_str();
                assert!(matches!(level, Some("error" | "warning" | "note")), "{r}");
                r["id"].as_str().unwrap_or_default()
            })
            .collect();
        assert_eq!(rule_ids.len(), rules().len());

        let results = runs[0]["results"].as_array().expect("results");
        assert_eq!(results.len(), 3);
        for r in results {
            let id = r["ruleId"].as_str().expect("ruleId");
            let index = r["ruleIndex"].as_u64().expect("ruleIndex");
            assert_eq!(
                rule_ids.get(usize::try_from(index).unwrap_or(usize::MAX)),
                Some(&id)
            );
            assert!(matches!(
                r["level"].as_str(),
                Some("error" | "warning" | "note")
            ));
            assert!(r["message"]["text"].as_str().is_some_and(|t| !t.is_empty()));
            assert_eq!(
                r["partialFingerprints"]["lifeboatFinding/v2"]
                    .as_str()
                    .map(str::len),
                Some(32)
            );
        }
        let levels: Vec<&str> = results.iter().filter_map(|r| r["level"].as_str()).collect();
        assert_eq!(levels, ["error", "warning", "note"]);

        let physical = &results[0]["locations"][0]["physicalLocation"];
        assert_eq!(physical["artifactLocation"]["uri"], "deploy/compose.yaml");
        assert_eq!(physical["region"]["startLine"], 12);
        assert!(
            results[1]["locations"][0]["physicalLocation"]
                .get("region")
                .is_none()
        );
        assert_eq!(
            results[2]["locations"][0]["logicalLocations"][0]["name"],
            "web-1"
        );
        assert_eq!(results[0]["properties"]["volume"], "shop_pgdata");
    }

    #[test]
    fn without_options_there_is_no_information_uri() {
        let log = to_sarif(&[], &SarifOptions::default());
        assert!(
            log["runs"][0]["tool"]["driver"]
                .get("informationUri")
                .is_none()
        );
        assert_eq!(log["runs"][0]["results"], json!([]));
    }

    #[test]
    fn fingerprints_ignore_the_line_but_not_the_subject_or_the_file() {
        let a = finding("LB001", Severity::Critical, compose(Some(3)));
        let b = finding("LB001", Severity::Critical, compose(Some(30)));
        let mut c = a.clone();
        c.subject = "db2".into();
        let file = Some("deploy/compose.yaml");
        assert_eq!(fingerprint(&a, file), fingerprint(&b, file));
        assert_ne!(fingerprint(&a, file), fingerprint(&c, file));
        assert_ne!(
            fingerprint(&a, file),
            fingerprint(&a, Some("staging/compose.yaml"))
        );
        let base = Some(Path::new("/repo"));
        let log = to_sarif(
            &[a],
            &SarifOptions {
                base,
                information_uri: None,
            },
        );
        assert_eq!(
            log["runs"][0]["results"][0]["partialFingerprints"]["lifeboatFinding/v2"],
            json!(fingerprint(
                &finding("LB001", Severity::Critical, compose(None)),
                Some("deploy/compose.yaml")
            ))
        );
    }

    #[test]
    fn file_uris_are_relative_and_escaped() {
        let base = Some(Path::new("/repo"));
        assert_eq!(
            file_uri(Path::new("/repo/compose.yaml"), base),
            "compose.yaml"
        );
        assert_eq!(file_uri(Path::new("./compose.yaml"), None), "compose.yaml");
        assert_eq!(
            file_uri(Path::new("../other/compose.yml"), None),
            "../other/compose.yml"
        );
        assert_eq!(
            file_uri(Path::new("/srv/my stack/compose#1.yaml"), base),
            "file:///srv/my%20stack/compose%231.yaml"
        );
        assert_eq!(
            file_uri(Path::new("stacks/ünï.yaml"), None),
            "stacks/%C3%BCn%C3%AF.yaml"
        );
    }
}
