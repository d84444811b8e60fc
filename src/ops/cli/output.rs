//! `-o/--out PATH`, where `-` is standard output, for every command that
//! writes a file.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::CliError;

/// Where a command writes its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output (`-o -`).
    Stdout,
    /// A file.
    File(PathBuf),
}

impl From<&OsStr> for Output {
    fn from(arg: &OsStr) -> Self {
        if arg == "-" {
            Output::Stdout
        } else {
            Output::File(PathBuf::from(arg))
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Stdout => f.write_str("standard output"),
            Output::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl Output {
    /// Whether this is standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Output::Stdout)
    }
}

/// How a file is written (standard output ignores both).
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Replace an existing file; without it an existing file is an error.
    pub overwrite: bool,
    /// Readable by the owner only (mode 0600 on Unix): key material.
    pub private: bool,
}

/// Writes `contents` to `out`. A file is written beside its target and
/// renamed over it, so a reader (Envoy watching the OpenAPI document) never
/// sees half of it, and a replaced private file never keeps a looser mode.
pub fn write_output(out: &Output, contents: &[u8], options: WriteOptions) -> Result<(), CliError> {
    match out {
        Output::Stdout => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(contents)
                .and_then(|()| stdout.flush())
                .map_err(|e| CliError::Failure(format!("writing to standard output: {e}")))
        }
        Output::File(path) => write_file(path, contents, options)
            .map_err(|e| CliError::Failure(format!("{}: {e}", path.display()))),
    }
}

fn write_file(path: &Path, contents: &[u8], options: WriteOptions) -> Result<(), String> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    if options.private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    }
    // Removes what it created if writing fails, never a file it did not
    // create.
    let write = |target: &Path| -> std::io::Result<()> {
        let mut file = open.open(target)?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .inspect_err(|_| {
                let _ = std::fs::remove_file(target);
            })
    };
    if !options.overwrite {
        // create_new: an existing file (or one appearing meanwhile) is
        // never clobbered.
        return write(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                "exists (use --force to overwrite)".to_string()
            } else {
                e.to_string()
            }
        });
    }
    let name = path
        .file_name()
        .ok_or_else(|| "not a file name".to_string())?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    write(&tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}
