//! `gatehouse keys generate`: a new signing key for the internal issuer.
//! `gatehouse keys store-key`: a new key for `store.encryption_key_file`.

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
    /// Write a new store encryption key (64 hex characters and a newline,
    /// mode 0600) and print its key id.
    ///
    /// For `store.encryption_key_file`. To rotate, put the new key as the
    /// first line of the existing file instead of replacing it.
    StoreKey {
        /// Where to write the key (`-`: standard output; the key id then
        /// goes to standard error).
        #[arg(long, short, value_name = "PATH")]
        out: Output,
        /// Overwrite an existing file (its keys are lost: values sealed
        /// under them no longer open).
        #[arg(long)]
        force: bool,
    },
}

/// Runs `gatehouse keys …`.
pub fn keys(command: KeysCommand) -> ExitCode {
    finish(match command {
        KeysCommand::Generate { alg, out, force } => generate(&alg, &out, force),
        KeysCommand::StoreKey { out, force } => store_key(&out, force),
    })
}

fn generate(alg: &str, out: &Output, force: bool) -> Result<(), CliError> {
    let alg = SigningAlgorithm::parse(alg)
        .ok_or_else(|| CliError::Usage(format!("--alg {alg:?}: expected RS256, ES256 or EdDSA")))?;
    let (key, pem) = SigningKey::generate(alg).map_err(|e| CliError::Failure(e.to_string()))?;
    let options = WriteOptions {
        overwrite: force,
        private: true,
    };
    write_output(out, pem.expose().as_bytes(), options)?;
    if out.is_stdout() {
        eprintln!("kid {}", key.kid());
    } else {
        eprintln!("wrote a new {} signing key to {out}", alg.as_str());
        println!("{}", key.kid());
    }
    Ok(())
}

fn store_key(out: &Output, force: bool) -> Result<(), CliError> {
    let (key, id) =
        crate::store::sealed::generate_key().map_err(|e| CliError::Failure(e.to_string()))?;
    let options = WriteOptions {
        overwrite: force,
        private: true,
    };
    write_output(out, format!("{}\n", key.expose()).as_bytes(), options)?;
    if out.is_stdout() {
        eprintln!("key id {id}");
    } else {
        eprintln!("wrote a new store encryption key to {out}");
        println!("{id}");
    }
    Ok(())
}
