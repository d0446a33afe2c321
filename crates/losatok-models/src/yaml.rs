//! Reading YAML configs with messages that tell syntax from content.
//!
//! A config is parsed twice: first as plain YAML, so that a syntax error (a tab used for
//! indentation, an unclosed bracket) is reported as a syntax error at its line, then into the
//! typed config, so that unknown keys and wrong types are reported as such. Parsing straight
//! into the typed config would report an unclosed `[64, 4` as "invalid type: string
//! \"4 patch_stride\"", because the YAML reader carries on across lines until the types fail.

use serde::de::DeserializeOwned;

/// Parses `text` into `T`; the error is one line, prefixed with `YAML syntax error` for
/// syntax errors, and names the line where the parser knows it.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    if let Err(e) = serde_norway::from_str::<serde_norway::Value>(text) {
        return Err(syntax_message(text, &e));
    }
    serde_norway::from_str(text).map_err(|e| one_line(&e.to_string()))
}

/// A syntax error in the user's terms: where, what, and the usual cause (a tab).
fn syntax_message(text: &str, e: &serde_norway::Error) -> String {
    let message = one_line(&e.to_string());
    let Some(at) = e.location() else {
        return format!("YAML syntax error: {message}");
    };
    let line = at.line();
    let tab_line = text
        .lines()
        .enumerate()
        .take(line)
        .find(|(_, l)| {
            l.chars()
                .take_while(|c| c.is_whitespace())
                .any(|c| c == '\t')
        })
        .map(|(i, _)| i + 1);
    // the parser's own words without its position, which the prefix gives
    let what = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    match tab_line {
        Some(t) => format!(
            "YAML syntax error at line {t}: a tab is used for indentation (YAML indents with spaces; \
             the parser stopped at line {line}: {what})"
        ),
        None => format!(
            "YAML syntax error at line {line}, column {}: {what}",
            at.column()
        ),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        a: Vec<u32>,
        b: u32,
    }

    #[test]
    fn tells_syntax_from_content() {
        let e = from_str::<Cfg>("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.starts_with("YAML syntax error at line "), "{e}");
        let e = from_str::<Cfg>("a: [1]\n\tb: 3\n").unwrap_err();
        assert!(
            e.starts_with("YAML syntax error at line 2: a tab is used for indentation"),
            "{e}"
        );
        let e = from_str::<Cfg>("a: [1]\nb: x\n").unwrap_err();
        assert!(!e.contains("syntax") && e.contains("invalid type"), "{e}");
        let e = from_str::<Cfg>("a: [1]\nb: 1\nc: 2\n").unwrap_err();
        assert!(e.contains("unknown field `c`"), "{e}");
        assert_eq!(from_str::<Cfg>("a: [1]\nb: 2\n").unwrap().b, 2);
    }
}
