//! Walks `config` values, collecting every problem with its key path and origin.

use std::time::Duration;

use config::{Map, Value, ValueKind};

use super::Problem;
use super::units::{did_you_mean, parse_duration, parse_size};

/// The environment's values have this origin in the `config` crate.
const ENVIRONMENT: &str = "the environment";

/// Collects problems while reading.
pub(crate) struct Reader {
    pub(crate) problems: Vec<Problem>,
    /// The files as the user named them, with their canonical paths: the `config` crate
    /// records origins relative to the working directory.
    files: Vec<(Option<std::path::PathBuf>, String)>,
}

/// A table being read: its path, where it came from, and its entries.
pub(crate) struct Table<'v> {
    pub(crate) path: String,
    pub(crate) origin: Option<String>,
    pub(crate) map: &'v Map<String, Value>,
}

/// Where a value at `path` came from, in words a user can act on.
pub(crate) fn describe_origin(origin: Option<&str>, path: &str) -> String {
    match origin {
        Some(ENVIRONMENT) => format!(
            "environment variable WSHERD__{}",
            path.replace('.', "__").to_uppercase()
        ),
        Some(file) => file.to_owned(),
        None => "(built-in default)".to_owned(),
    }
}

/// Where `value` came from: its own origin, or for a table or list the first origin inside.
pub(crate) fn origin_of(value: &Value) -> Option<String> {
    if let Some(origin) = value.origin() {
        return Some(origin.to_owned());
    }
    match &value.kind {
        ValueKind::Table(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.into_iter()
                .find_map(|k| map.get(k).and_then(origin_of))
        }
        ValueKind::Array(items) => items.iter().find_map(origin_of),
        _ => None,
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn kind_name(value: &Value) -> &'static str {
    match value.kind {
        ValueKind::Nil => "nothing",
        ValueKind::Boolean(_) => "a boolean",
        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_) => {
            "a number"
        }
        ValueKind::Float(_) => "a number",
        ValueKind::String(_) => "a string",
        ValueKind::Table(_) => "a table",
        ValueKind::Array(_) => "a list",
    }
}

/// Shows a value in an error: strings quoted, tables and lists by kind only.
pub(crate) fn show(value: &Value) -> String {
    match &value.kind {
        ValueKind::String(text) => format!("{text:?}"),
        ValueKind::Table(_) | ValueKind::Array(_) | ValueKind::Nil => kind_name(value).to_owned(),
        _ => value.to_string(),
    }
}

impl Reader {
    pub(crate) fn new(files: &[std::path::PathBuf]) -> Self {
        Reader {
            problems: Vec::new(),
            files: files
                .iter()
                .map(|f| (std::fs::canonicalize(f).ok(), f.display().to_string()))
                .collect(),
        }
    }

    /// A reader for the same files with no problems yet: what it finds can be sifted before
    /// it is reported.
    pub(crate) fn scratch(&self) -> Reader {
        Reader {
            problems: Vec::new(),
            files: self.files.clone(),
        }
    }

    pub(crate) fn problem(&mut self, origin: Option<&str>, path: &str, message: impl Into<String>) {
        let origin = origin.map(|origin| {
            let canonical = std::fs::canonicalize(origin).ok();
            self.files
                .iter()
                .find(|(file, _)| file.is_some() && *file == canonical)
                .map_or_else(|| origin.to_owned(), |(_, given)| given.clone())
        });
        self.problems.push(Problem {
            origin: describe_origin(origin.as_deref(), path),
            key: path.to_owned(),
            message: message.into(),
        });
    }

    /// Reads `value` at `path` as a table whose keys must be among `known`.
    pub(crate) fn table<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<Table<'v>> {
        let ValueKind::Table(map) = &value.kind else {
            self.problem(
                origin_of(value).as_deref(),
                path,
                format!("expected a table, found {}", kind_name(value)),
            );
            return None;
        };
        let table = Table {
            path: path.to_owned(),
            origin: origin_of(value),
            map,
        };
        self.unknown_keys(&table, known);
        Some(table)
    }

    /// Reports every key of `table` not in `known` (an empty `known` accepts any key).
    pub(crate) fn unknown_keys(&mut self, table: &Table<'_>, known: &[&str]) {
        if known.is_empty() {
            return;
        }
        let mut keys: Vec<&String> = table.map.keys().collect();
        keys.sort();
        for key in keys {
            if known.contains(&key.as_str()) {
                continue;
            }
            let path = join(&table.path, key);
            let origin = table
                .map
                .get(key)
                .and_then(Value::origin)
                .map(str::to_owned);
            let message = match did_you_mean(key, known) {
                Some(suggestion) => format!("unknown key {key:?}; did you mean {suggestion:?}?"),
                None => format!("unknown key {key:?}; expected one of: {}", known.join(", ")),
            };
            self.problem(origin.as_deref(), &path, message);
        }
    }

    fn entry<'v>(&self, table: &Table<'v>, key: &str) -> Option<(&'v Value, String)> {
        table
            .map
            .get(key)
            .map(|value| (value, join(&table.path, key)))
    }

    pub(crate) fn string(&mut self, table: &Table<'_>, key: &str) -> Option<String> {
        let (value, path) = self.entry(table, key)?;
        match &value.kind {
            ValueKind::String(text) => Some(text.clone()),
            _ => {
                self.problem(
                    origin_of(value).as_deref(),
                    &path,
                    format!("expected a string, found {}", show(value)),
                );
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, table: &Table<'_>, key: &str) -> Option<bool> {
        let (value, path) = self.entry(table, key)?;
        match &value.kind {
            ValueKind::Boolean(flag) => Some(*flag),
            ValueKind::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
            ValueKind::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.problem(
                    origin_of(value).as_deref(),
                    &path,
                    format!("expected true or false, found {}", show(value)),
                );
                None
            }
        }
    }

    /// A whole number in `min..=max`; strings (from the environment) are parsed.
    pub(crate) fn integer(
        &mut self,
        table: &Table<'_>,
        key: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let (value, path) = self.entry(table, key)?;
        let number = match &value.kind {
            ValueKind::I64(n) => u64::try_from(*n).ok(),
            ValueKind::U64(n) => Some(*n),
            ValueKind::I128(n) => u64::try_from(*n).ok(),
            ValueKind::U128(n) => u64::try_from(*n).ok(),
            ValueKind::String(text) => text.trim().parse::<u64>().ok(),
            _ => None,
        };
        match number.filter(|n| (min..=max).contains(n)) {
            Some(n) => Some(n),
            None => {
                self.problem(
                    origin_of(value).as_deref(),
                    &path,
                    format!(
                        "expected a whole number from {min} to {max}, found {}",
                        show(value)
                    ),
                );
                None
            }
        }
    }

    /// A number at least `min`; strings (from the environment) are parsed.
    pub(crate) fn float(&mut self, table: &Table<'_>, key: &str, min: f64) -> Option<f64> {
        let (value, path) = self.entry(table, key)?;
        let number = match &value.kind {
            ValueKind::Float(f) => Some(*f),
            ValueKind::I64(n) => Some(*n as f64),
            ValueKind::U64(n) => Some(*n as f64),
            ValueKind::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        match number.filter(|n| n.is_finite() && *n >= min) {
            Some(n) => Some(n),
            None => {
                self.problem(
                    origin_of(value).as_deref(),
                    &path,
                    format!("expected a number of at least {min}, found {}", show(value)),
                );
                None
            }
        }
    }

    /// A human duration string, or a number of seconds.
    pub(crate) fn duration(&mut self, table: &Table<'_>, key: &str) -> Option<Duration> {
        let (value, path) = self.entry(table, key)?;
        let parsed = match &value.kind {
            ValueKind::String(text) => parse_duration(text),
            ValueKind::I64(_) | ValueKind::U64(_) | ValueKind::Float(_) => {
                parse_duration(&value.to_string())
            }
            _ => Err(format!(
                "expected a duration such as \"20s\", found {}",
                show(value)
            )),
        };
        self.ok_or_report(parsed, value, &path)
    }

    /// A human size string, or a number of bytes.
    pub(crate) fn size(&mut self, table: &Table<'_>, key: &str) -> Option<usize> {
        let (value, path) = self.entry(table, key)?;
        let parsed = match &value.kind {
            ValueKind::String(text) => parse_size(text),
            ValueKind::I64(_) | ValueKind::U64(_) => parse_size(&value.to_string()),
            _ => Err(format!(
                "expected a size such as \"1MiB\", found {}",
                show(value)
            )),
        };
        self.ok_or_report(parsed, value, &path)
    }

    /// One of `choices`.
    pub(crate) fn choice<'c>(
        &mut self,
        table: &Table<'_>,
        key: &str,
        choices: &[&'c str],
    ) -> Option<&'c str> {
        let text = self.string(table, key)?;
        if let Some(choice) = choices.iter().find(|c| **c == text) {
            return Some(choice);
        }
        let (value, path) = self.entry(table, key)?;
        let hint = match did_you_mean(&text, choices) {
            Some(suggestion) => format!("; did you mean {suggestion:?}?"),
            None => String::new(),
        };
        self.problem(
            origin_of(value).as_deref(),
            &path,
            format!(
                "expected one of {}, found {text:?}{hint}",
                quote_all(choices)
            ),
        );
        None
    }

    /// A list of strings.
    pub(crate) fn strings(&mut self, table: &Table<'_>, key: &str) -> Option<Vec<String>> {
        let (value, path) = self.entry(table, key)?;
        let ValueKind::Array(items) = &value.kind else {
            self.problem(
                origin_of(value).as_deref(),
                &path,
                format!("expected a list of strings, found {}", show(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match &item.kind {
                ValueKind::String(text) => out.push(text.clone()),
                _ => self.problem(
                    origin_of(item).as_deref(),
                    &format!("{path}[{i}]"),
                    format!("expected a string, found {}", show(item)),
                ),
            }
        }
        Some(out)
    }

    fn ok_or_report<T>(
        &mut self,
        parsed: Result<T, String>,
        value: &Value,
        path: &str,
    ) -> Option<T> {
        match parsed {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.problem(origin_of(value).as_deref(), path, message);
                None
            }
        }
    }
}

fn quote_all(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("{c:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deep-merges `over` onto `base`: tables key by key, anything else replaced.
pub(crate) fn merge(base: &Value, over: &Value) -> Value {
    match (&base.kind, &over.kind) {
        (ValueKind::Table(base_map), ValueKind::Table(over_map)) => {
            let mut merged = base_map.clone();
            for (key, value) in over_map {
                let entry = match merged.get(key) {
                    Some(existing) => merge(existing, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), entry);
            }
            Value::new(
                over.origin().map(str::to_owned).as_ref(),
                ValueKind::Table(merged),
            )
        }
        _ => over.clone(),
    }
}

/// Whether `value` holds an entry at dotted `path` (a trailing `[index]` counts as the entry
/// it indexes).
pub(crate) fn has_path(value: &Value, path: &str) -> bool {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let key = first.split('[').next().unwrap_or(first);
    let ValueKind::Table(map) = &value.kind else {
        return false;
    };
    match (map.get(key), rest) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(child), Some(rest)) => match child.kind {
            ValueKind::Table(_) => has_path(child, rest),
            // A path into something that is not a table: the entry itself is at fault.
            _ => true,
        },
    }
}

/// Removes the entry at dotted `path` (a path through a non-table removes the nearest table
/// entry above it).
pub(crate) fn remove_path(value: &mut Value, path: &str) {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let ValueKind::Table(map) = &mut value.kind else {
        return;
    };
    match (rest, map.get_mut(first)) {
        (Some(rest), Some(child)) if matches!(child.kind, ValueKind::Table(_)) => {
            remove_path(child, rest);
        }
        _ => {
            map.remove(first);
        }
    }
}
