//! `wsherd init`: a commented config with every section, to start from.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The config `init` writes; `wsherd check` accepts it as it is (a test keeps it so, and keeps
/// every key the config reader knows in it).
pub(crate) const TEMPLATE: &str = include_str!("init.toml");

/// Writes [`TEMPLATE`] to `file` (`-` for stdout), refusing to replace a file unless `force`.
pub(crate) fn init(file: &Path, force: bool) -> ExitCode {
    if file == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        return match stdout.write_all(TEMPLATE.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("wsherd: cannot write stdout: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let written = options
        .open(file)
        .and_then(|mut out| out.write_all(TEMPLATE.as_bytes()));
    match written {
        Ok(()) => {
            eprintln!(
                "wsherd: wrote {}; check it with `wsherd check --config {}`",
                file.display(),
                file.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "wsherd: {} exists; pass --force to replace it",
                file.display()
            );
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("wsherd: cannot write {}: {error}", file.display());
            ExitCode::FAILURE
        }
    }
}
