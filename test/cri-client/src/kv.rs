//! KEY=VALUE arguments (--label, --annotation, --env).

use std::collections::HashMap;

/// Splits at the first '=' (a value may hold more of them); the key must
/// not be empty. Used as clap's value parser, so a bad one is a usage
/// error (exit 2) naming the argument.
pub fn parse_kv(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some(("", _)) => Err(format!("{text:?}: the key before '=' is empty")),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!("{text:?}: expected KEY=VALUE (no '=')")),
    }
}

/// Pairs as a map; a key given twice keeps its last value.
pub fn to_map(pairs: &[(String, String)]) -> HashMap<String, String> {
    pairs.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_equals_sign() {
        assert_eq!(parse_kv("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_kv("a=").unwrap(), ("a".into(), String::new()));
    }

    #[test]
    fn refuses_a_missing_equals_sign_or_key() {
        let err = parse_kv("novalue").unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
        assert!(parse_kv("=v").is_err());
    }

    #[test]
    fn the_last_value_of_a_key_wins() {
        let map = to_map(&[("k".into(), "1".into()), ("k".into(), "2".into())]);
        assert_eq!(map.len(), 1);
        assert_eq!(map["k"], "2");
    }
}
