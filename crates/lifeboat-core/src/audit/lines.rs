//! Line numbers of keys and list items in a block-style YAML text, for
//! pointing findings at the right line of a compose file.
//!
//! The YAML parser gives values without positions, so this reads the text
//! again by indentation alone. It understands what compose files are made
//! of (block mappings, block sequences, also indentless ones) and answers
//! `None` for anything else (flow style, keys brought in by a merge), in
//! which case a finding points at the enclosing service.

/// The lines of a YAML text, by indentation.
pub(super) struct Outline<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Outline<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    /// The 1-based line of the key at `path` (`["services", "db"]`).
    pub(super) fn key(&self, path: &[&str]) -> Option<usize> {
        self.key_index(path).map(|i| i + 1)
    }

    /// The 1-based line of the `index`th item of the sequence at `path`.
    pub(super) fn item(&self, path: &[&str], index: usize) -> Option<usize> {
        let parent = self.key_index(path)?;
        self.children(Some(parent))
            .into_iter()
            .filter(|&i| is_item(self.lines[i]))
            .nth(index)
            .map(|i| i + 1)
    }

    fn key_index(&self, path: &[&str]) -> Option<usize> {
        let mut at = None;
        for key in path {
            at = Some(
                self.children(at)
                    .into_iter()
                    .find(|&i| key_of(self.lines[i]) == Some(*key))?,
            );
        }
        at
    }

    /// The lines directly below `parent` (the top level for `None`): those
    /// at the indentation of the first line below it, up to the first line
    /// indented no deeper than the parent. Sequence items at the parent's
    /// own indentation belong to it too (an indentless sequence).
    fn children(&self, parent: Option<usize>) -> Vec<usize> {
        let (start, parent_indent) = match parent {
            None => (0, None),
            Some(i) => (i + 1, indent(self.lines[i])),
        };
        let mut child_indent = None;
        let mut children = Vec::new();
        for (i, line) in self.lines.iter().enumerate().skip(start) {
            let Some(ind) = indent(line) else { continue };
            let shallow = parent_indent.is_some_and(|p| ind <= p);
            let indentless_item = parent_indent == Some(ind)
                && is_item(line)
                && child_indent.is_none_or(|c| c == ind);
            if shallow && !indentless_item {
                break;
            }
            match child_indent {
                None => {
                    child_indent = Some(ind);
                    children.push(i);
                }
                Some(c) if c == ind => children.push(i),
                Some(_) => {}
            }
        }
        children
    }
}

/// The indentation of a line that holds content; `None` for blank lines,
/// comments and document markers.
fn indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start_matches(' ');
    if trimmed.trim().is_empty()
        || trimmed.starts_with('#')
        || trimmed.starts_with("---")
        || trimmed.starts_with("...")
    {
        return None;
    }
    Some(line.len() - trimmed.len())
}

fn is_item(line: &str) -> bool {
    let t = line.trim_start();
    t == "-" || t.starts_with("- ")
}

/// The key a mapping line starts with: `db:`, `"db":`, `'db': {...}`.
fn key_of(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let (key, after) = match t.chars().next()? {
        q @ ('"' | '\'') => {
            let end = t[1..].find(q)? + 1;
            (&t[1..end], &t[end + 1..])
        }
        _ => {
            let end = t.find(": ").or_else(|| t.strip_suffix(':').map(str::len))?;
            (t[..end].trim_end(), &t[end..])
        }
    };
    after.trim_start().starts_with(':').then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# a compose file
name: shop

services:
  db:
    image: postgres:16
    volumes:
      - pgdata:/var/lib/postgresql/data   # data
      - type: bind
        source: ./init
        target: /docker-entrypoint-initdb.d
      - ./conf:/etc/postgresql:ro
  "web":
    image: nginx
    volumes:
    - ./site:/usr/share/nginx/html:ro
    - ./nginx.conf:/etc/nginx/nginx.conf:ro
    tmpfs: [/run]
  cache:
    image: redis

volumes:
  pgdata:
  'other': {}
"#;

    #[test]
    fn keys_are_found_by_their_path() {
        let outline = Outline::new(TEXT);
        assert_eq!(outline.key(&["name"]), Some(2));
        assert_eq!(outline.key(&["services"]), Some(4));
        assert_eq!(outline.key(&["services", "db"]), Some(5));
        assert_eq!(outline.key(&["services", "web"]), Some(13));
        assert_eq!(outline.key(&["services", "cache"]), Some(19));
        assert_eq!(outline.key(&["services", "web", "tmpfs"]), Some(18));
        assert_eq!(outline.key(&["volumes", "pgdata"]), Some(23));
        assert_eq!(outline.key(&["volumes", "other"]), Some(24));
        assert_eq!(outline.key(&["services", "nope"]), None);
        // `image` of db is not a top-level key.
        assert_eq!(outline.key(&["image"]), None);
    }

    #[test]
    fn sequence_items_are_counted_at_their_own_indentation() {
        let outline = Outline::new(TEXT);
        let db = ["services", "db", "volumes"];
        assert_eq!(outline.item(&db, 0), Some(8));
        assert_eq!(outline.item(&db, 1), Some(9));
        assert_eq!(outline.item(&db, 2), Some(12));
        assert_eq!(outline.item(&db, 3), None);
        let web = ["services", "web", "volumes"];
        assert_eq!(outline.item(&web, 0), Some(16));
        assert_eq!(outline.item(&web, 1), Some(17));
        assert_eq!(outline.item(&web, 2), None);
        // Flow sequences have no item lines.
        assert_eq!(outline.item(&["services", "web", "tmpfs"], 0), None);
    }

    #[test]
    fn odd_lines_are_not_keys() {
        assert_eq!(key_of("  image: postgres"), Some("image"));
        assert_eq!(key_of("  db:"), Some("db"));
        assert_eq!(key_of("  \"a b\": 1"), Some("a b"));
        assert_eq!(key_of("  - ./a:/b"), None);
        assert_eq!(key_of("  plain text"), None);
        assert_eq!(key_of("  url: http://x"), Some("url"));
        assert_eq!(key_of("  'open: x"), None);
    }
}
