//! Shell commands as words: a container's command, a healthcheck or a
//! hook, split as a shell would split them, for the rules that read what
//! they run.

/// A command string split into words as a shell would, quotes removed:
/// `redis-server --save ""` is three words, the last empty.
pub(crate) fn split_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(split_words("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(split_words("--save '' x"), ["--save", "", "x"]);
        assert_eq!(
            split_words(r#"say "a \"b\" c" d\ e"#),
            ["say", "a \"b\" c", "d e"]
        );
        assert!(split_words("   ").is_empty());
    }
}
