//! Where results go: tables for people (comfy-table, coloured only on a terminal and
//! without `NO_COLOR`), JSON for scripts (`--json`), written to standard output.

use std::io::{IsTerminal as _, Write as _};

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};
use serde::Serialize;

use crate::error::CliError;

/// How a command writes its results.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// `--json`: JSON documents instead of tables.
    pub(crate) json: bool,
    /// Whether standard output takes colours.
    color: bool,
    /// Whether standard output is a terminal.
    terminal: bool,
}

/// Whether output to a terminal or not (`terminal`) takes colours, with `no_color` the
/// value of `NO_COLOR`: only on a terminal, and not when `NO_COLOR` is set to anything
/// non-empty (<https://no-color.org>).
fn colors(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|value| value.is_empty())
}

fn colors_for(terminal: bool) -> bool {
    colors(terminal, std::env::var_os("NO_COLOR").as_deref())
}

/// Whether standard error takes colours.
pub(crate) fn stderr_color() -> bool {
    colors_for(std::io::stderr().is_terminal())
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        let terminal = std::io::stdout().is_terminal();
        Self {
            json,
            color: colors_for(terminal),
            terminal,
        }
    }

    /// A table with `headers`, styled for where it goes.
    pub(crate) fn table<const N: usize>(&self, headers: [&str; N]) -> Table {
        let mut table = Table::new();
        if self.terminal {
            table.load_preset(presets::UTF8_FULL_CONDENSED);
            // Wrapped to the terminal's width when it tells one that fits a table (a
            // terminal of unknown size reports none, or zero columns).
            if table.width().is_some_and(|width| width >= 60) {
                table.set_content_arrangement(ContentArrangement::Dynamic);
            }
        } else {
            // Piped or in a log: plain ASCII, every column at full width.
            table
                .load_preset(presets::ASCII_FULL_CONDENSED)
                .force_no_tty();
        }
        table.set_header(headers.map(|header| self.header(header)));
        table
    }

    fn header(&self, text: &str) -> Cell {
        let cell = Cell::new(text);
        if self.color {
            cell.add_attribute(comfy_table::Attribute::Bold)
        } else {
            cell
        }
    }

    /// A cell in `color` when colours are on.
    pub(crate) fn colored(&self, text: String, color: Color) -> Cell {
        let cell = Cell::new(text);
        if self.color { cell.fg(color) } else { cell }
    }

    /// Writes `table`, or `empty` instead when it has no rows.
    pub(crate) fn print_table(&self, table: &Table, empty: &str) -> Result<(), CliError> {
        if table.row_count() == 0 {
            self.line(empty)
        } else {
            self.line(&table.to_string())
        }
    }

    /// Writes `value` as pretty JSON.
    pub(crate) fn print_json(&self, value: &impl Serialize) -> Result<(), CliError> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Output(std::io::Error::other(e)))?;
        self.line(&text)
    }

    /// Writes `value` as one line of JSON (for streams of records: `es tail --json`).
    pub(crate) fn print_json_line(&self, value: &impl Serialize) -> Result<(), CliError> {
        let text =
            serde_json::to_string(value).map_err(|e| CliError::Output(std::io::Error::other(e)))?;
        self.line(&text)
    }

    /// Writes one line to standard output, flushed (so that `es tail` shows each event
    /// as it comes, even through a pipe).
    pub(crate) fn line(&self, text: &str) -> Result<(), CliError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")
            .and_then(|()| out.flush())
            .map_err(CliError::Output)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colors;

    #[test]
    fn colours_only_on_a_terminal_and_never_with_no_color() {
        assert!(colors(true, None));
        assert!(!colors(false, None), "not in a pipe or a file");
        assert!(!colors(true, Some(OsStr::new("1"))));
        assert!(
            !colors(true, Some(OsStr::new("false"))),
            "any value turns them off"
        );
        assert!(colors(true, Some(OsStr::new(""))), "an empty one does not");
    }
}
