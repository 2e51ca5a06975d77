//! Readable, line-by-line differences for failed expectations.

use std::fmt::{Debug, Write as _};

use similar::{ChangeTag, TextDiff};

/// A unified, line-by-line diff of the pretty `Debug` forms of `expected` and `actual`,
/// lines marked `-` (expected only), `+` (actual only) or ` ` (both).
pub(crate) fn debug_diff<T: Debug + ?Sized>(expected: &T, actual: &T) -> String {
    let expected = format!("{expected:#?}");
    let actual = format!("{actual:#?}");
    let mut out = String::from("(- expected, + actual)\n");
    for change in TextDiff::from_lines(&expected, &actual).iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        let line = change.value().trim_end_matches('\n');
        let _ = writeln!(out, "{sign} {line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_changed_lines() {
        let diff = debug_diff(&vec![1, 2, 3], &vec![1, 5, 3]);
        assert!(diff.contains("-     2,"), "{diff}");
        assert!(diff.contains("+     5,"), "{diff}");
        assert!(diff.contains("      1,"), "{diff}");
    }
}
