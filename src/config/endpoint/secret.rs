//! Values that may be secrets: a plain string, `{ env = "VARIABLE" }` or `{ file = "PATH" }`.
//!
//! Header values, the URL and on-open messages are read this way. What they resolve to is
//! never part of a problem's message, and neither is a value of the wrong type (a numeric API
//! key is still a key): problems name the key, the variable or the file, never the contents.

use config::{Value, ValueKind};

use crate::config::read::{Reader, kind_name, origin_of};

/// What a secret-capable key (or each item of a secret-capable list) accepts.
const ACCEPTED: &str = "a string, { env = \"VARIABLE\" } or { file = \"PATH\" }";

/// Resolves `value` at `path`; a value from the environment or a file is also appended to
/// `secrets` (the fingerprint that tells a reload whether the endpoint changed).
pub(in crate::config) fn resolve(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    secrets: &mut String,
) -> Option<String> {
    let origin = origin_of(value);
    let source = match &value.kind {
        ValueKind::String(text) => return Some(text.clone()),
        ValueKind::Table(map) if map.len() == 1 => match map.iter().next() {
            Some((
                key,
                Value {
                    kind: ValueKind::String(name),
                    ..
                },
            )) if key == "env" => Source::Env(name),
            Some((
                key,
                Value {
                    kind: ValueKind::String(name),
                    ..
                },
            )) if key == "file" => Source::File(name),
            _ => Source::Invalid("a table of another shape"),
        },
        ValueKind::Table(_) => Source::Invalid("a table of another shape"),
        _ => Source::Invalid(kind_name(value)),
    };
    let resolved = match source {
        Source::Env(variable) => {
            lookup(variable).ok_or_else(|| format!("environment variable {variable:?} is not set"))
        }
        Source::File(file) => read_secret_file(file),
        Source::Invalid(found) => Err(format!("expected {ACCEPTED}, found {found}")),
    };
    match resolved {
        Ok(secret) => {
            secrets.push_str(&secret);
            secrets.push('\0');
            Some(secret)
        }
        Err(message) => {
            reader.problem(origin.as_deref(), path, message);
            None
        }
    }
}

/// Resolves a list at `path` whose items are each a string, `{ env }` or `{ file }`; items
/// that fail are reported at `path[i]` and left out.
pub(in crate::config) fn resolve_list(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    secrets: &mut String,
) -> Option<Vec<String>> {
    let ValueKind::Array(items) = &value.kind else {
        reader.problem(
            origin_of(value).as_deref(),
            path,
            format!(
                "expected a list, each item {ACCEPTED}, found {}",
                kind_name(value)
            ),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(text) = resolve(reader, item, &format!("{path}[{i}]"), lookup, secrets) {
            out.push(text);
        }
    }
    Some(out)
}

/// The file a `{ file = "PATH" }` value names, for reading it again before every attempt.
pub(in crate::config) fn file_of(value: &Value) -> Option<std::path::PathBuf> {
    let ValueKind::Table(map) = &value.kind else {
        return None;
    };
    match map.get("file") {
        Some(Value {
            kind: ValueKind::String(path),
            ..
        }) if map.len() == 1 => Some(std::path::PathBuf::from(path)),
        _ => None,
    }
}

enum Source<'v> {
    Env(&'v str),
    File(&'v str),
    /// Neither: what was found, in words that do not show it.
    Invalid(&'static str),
}

/// The file's contents without the line break editors leave at the end; the path, never the
/// contents, is what an error names. A relative path is taken from the working directory, as
/// the TLS files are.
fn read_secret_file(file: &str) -> Result<String, String> {
    match std::fs::read_to_string(file) {
        Ok(contents) => Ok(contents.trim_end_matches(['\n', '\r']).to_owned()),
        Err(error) => Err(format!("cannot read file {file:?}: {error}")),
    }
}

/// The variable a `{ env = "VARIABLE" }` value names (a name, not a secret: shown by `check`).
pub(in crate::config) fn env_of(value: &Value) -> Option<String> {
    let ValueKind::Table(map) = &value.kind else {
        return None;
    };
    match map.get("env") {
        Some(Value {
            kind: ValueKind::String(name),
            ..
        }) if map.len() == 1 => Some(name.clone()),
        _ => None,
    }
}
