//! `gatehouse keys generate`: a new signing key for the internal issuer.

use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, Output, WriteOptions, finish, write_output};
use crate::issuer::keys::{SigningAlgorithm, SigningKey};

/// `gatehouse keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new signing key (PKCS#8 PEM, mode 0600) and print its kid.
    Generate {
        /// RS256 (RSA 3072), ES256 (P-256) or EdDSA (Ed25519).
        #[arg(long, default_value = "ES256", value_parser = ["RS256", "ES256", "EdDSA"])]
        alg: String,
        /// Where to write the key (`-`: standard output; the kid then goes
        /// to standard error).
        #[arg(long, short, value_name = "PATH")]
        out: Output,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `gatehouse keys …`.
pub fn keys(command: KeysCommand) -> ExitCode {
    finish(run(command))
}

fn run(command: KeysCommand) -> Result<(), CliError> {
    let KeysCommand::Generate { alg, out, force } = command;
    let alg = SigningAlgorithm::parse(&alg)
        .ok_or_else(|| CliError::Usage(format!("--alg {alg:?}: expected RS256, ES256 or EdDSA")))?;
    let (key, pem) = SigningKey::generate(alg).map_err(|e| CliError::Failure(e.to_string()))?;
    let options = WriteOptions {
        overwrite: force,
        private: true,
    };
    write_output(&out, pem.expose().as_bytes(), options)?;
    if out.is_stdout() {
        eprintln!("kid {}", key.kid());
    } else {
        eprintln!("wrote a new {} signing key to {out}", alg.as_str());
        println!("{}", key.kid());
    }
    Ok(())
}
