//! The keys that seal stored values: parsed from `store.encryption_key_file`
//! (or made at random for the memory store), each named by a key id that
//! follows from the key itself.

use std::fmt;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Bytes of one key (AES-256).
pub const KEY_BYTES: usize = 32;
/// Hex characters of one key in the key file.
pub const KEY_HEX_CHARS: usize = 2 * KEY_BYTES;

/// A key's name in a sealed value: the first 4 bytes of the SHA-256 of the
/// key. It identifies the key without revealing it, so it may be logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &[u8]) -> KeyId {
        let digest = Sha256::digest(key);
        KeyId([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a key file (or a random key) was refused. No variant carries key
/// material: a message names line numbers and lengths only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A line holds something other than 64 characters.
    #[error("line {line}: expected {KEY_HEX_CHARS} hex characters, found {found}")]
    Length {
        /// 1-based line number.
        line: usize,
        /// How many characters the line holds (whitespace trimmed).
        found: usize,
    },
    /// A line of the right length holds a character that is not hex.
    #[error("line {line}: not hexadecimal (expected {KEY_HEX_CHARS} characters 0-9, a-f)")]
    NotHex {
        /// 1-based line number.
        line: usize,
    },
    /// A key appears twice (or two keys share a key id).
    #[error("line {line}: the same key (id {id}) as line {first}")]
    Duplicate {
        /// 1-based line number of the repeat.
        line: usize,
        /// 1-based line number of the first occurrence.
        first: usize,
        /// The shared key id.
        id: KeyId,
    },
    /// No line holds a key.
    #[error("no key: expected at least one line of {KEY_HEX_CHARS} hex characters")]
    Empty,
    /// The system's random source failed (making a key).
    #[error("the random source failed")]
    Random,
    /// The cipher refused a key (AES-256-GCM takes any 32 bytes, so this
    /// is not expected).
    #[error("line {line}: the cipher refused the key")]
    Cipher {
        /// 1-based line number (0 for a random key).
        line: usize,
    },
}

/// One key, ready to seal and open.
struct Key {
    id: KeyId,
    cipher: RandomizedNonceKey,
}

/// The keys values are sealed with: the first seals, every one opens.
pub struct Keyring {
    keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("ids", &self.ids()).finish()
    }
}

/// Why a sealed value did not open. Says nothing about the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than a header, nonce and tag.
    #[error("too short to be a sealed value")]
    Truncated,
    /// Sealed in a format this version does not know.
    #[error("unknown format version {0}")]
    Version(u8),
    /// Sealed under a key that is not in the key file (any more).
    #[error("sealed under key id {0}, which is not configured")]
    UnknownKey(KeyId),
    /// The key is known but the value does not authenticate: tampered with,
    /// or moved to another store key.
    #[error("does not authenticate under key id {0}")]
    Rejected(KeyId),
}

impl OpenError {
    /// The key id the value names, when it names one.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            OpenError::UnknownKey(id) | OpenError::Rejected(id) => Some(*id),
            OpenError::Truncated | OpenError::Version(_) => None,
        }
    }
}

/// A sealing failure: the random source or the cipher failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value could not be encrypted")]
pub struct SealError;

/// The format version, the first byte of every sealed value.
pub const VERSION: u8 = 1;
const HEADER: usize = 1 + 4;
const NONCE: usize = 12;
const TAG: usize = 16;
/// Bytes a sealed value has beyond its plaintext.
pub const OVERHEAD: usize = HEADER + NONCE + TAG;

impl Keyring {
    /// Reads and parses a key file ([`Keyring::parse`]).
    pub fn load(path: &Path) -> Result<Keyring, KeyringError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyringError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Keyring::parse(&text)
    }

    /// Parses a key file: one key per line, 64 hex characters (either
    /// case) with surrounding whitespace ignored; empty lines and lines
    /// starting with `#` are skipped. The first key seals.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keys: Vec<(usize, Key)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let found = line.chars().count();
            if found != KEY_HEX_CHARS {
                return Err(KeyringError::Length {
                    line: line_no,
                    found,
                });
            }
            let mut bytes = [0u8; KEY_BYTES];
            hex::decode_to_slice(line, &mut bytes)
                .map_err(|_| KeyringError::NotHex { line: line_no })?;
            let key = Key::new(&bytes).ok_or(KeyringError::Cipher { line: line_no })?;
            if let Some((first, _)) = keys.iter().find(|(_, k)| k.id == key.id) {
                return Err(KeyringError::Duplicate {
                    line: line_no,
                    first: *first,
                    id: key.id,
                });
            }
            keys.push((line_no, key));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring {
            keys: keys.into_iter().map(|(_, k)| k).collect(),
        })
    }

    /// One random key that lives as long as this keyring (the memory
    /// store's default: its values die with the process anyway).
    pub fn random() -> Result<Keyring, KeyringError> {
        let mut bytes = [0u8; KEY_BYTES];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyringError::Random)?;
        let key = Key::new(&bytes).ok_or(KeyringError::Cipher { line: 0 })?;
        Ok(Keyring { keys: vec![key] })
    }

    /// The key ids, the sealing key first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// Seals `plaintext` for the store key `aad` under the first key:
    /// `version (1) | key id (4) | nonce (12) | ciphertext | tag (16)`.
    /// The header and `aad` are authenticated, so the value opens only
    /// under the store key it was sealed for.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        // `keys` is never empty: `parse` and `random` refuse that.
        let key = self.keys.first().ok_or(SealError)?;
        let mut header = [0u8; HEADER];
        header[0] = VERSION;
        header[1..].copy_from_slice(&key.id.0);
        let mut body = Vec::with_capacity(plaintext.len() + TAG);
        body.extend_from_slice(plaintext);
        let nonce = key
            .cipher
            .seal_in_place_append_tag(Aad::from(authenticated(&header, aad)), &mut body)
            .map_err(|_| SealError)?;
        let mut sealed = Vec::with_capacity(OVERHEAD + plaintext.len());
        sealed.extend_from_slice(&header);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// Opens a value [`Keyring::seal`] made for the store key `aad`, with
    /// whichever configured key its id names.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < OVERHEAD {
            return Err(OpenError::Truncated);
        }
        let (header, rest) = sealed.split_at(HEADER);
        if header[0] != VERSION {
            return Err(OpenError::Version(header[0]));
        }
        let id = KeyId([header[1], header[2], header[3], header[4]]);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(OpenError::UnknownKey(id))?;
        let (nonce, body) = rest.split_at(NONCE);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Truncated)?;
        let mut body = body.to_vec();
        let plain_len = key
            .cipher
            .open_in_place(nonce, Aad::from(authenticated(header, aad)), &mut body)
            .map_err(|_| OpenError::Rejected(id))?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }
}

/// What the tag covers besides the ciphertext: the header, then the store
/// key.
fn authenticated(header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut all = Vec::with_capacity(header.len() + aad.len());
    all.extend_from_slice(header);
    all.extend_from_slice(aad);
    all
}

impl Key {
    fn new(bytes: &[u8; KEY_BYTES]) -> Option<Key> {
        Some(Key {
            id: KeyId::of(bytes),
            cipher: RandomizedNonceKey::new(&AES_256_GCM, bytes).ok()?,
        })
    }
}

/// A new random key as a key file line (64 lower-case hex characters, no
/// newline) and its id: `gatehouse keys store-key`.
pub fn generate_key() -> Result<(Secret, KeyId), KeyringError> {
    let mut bytes = [0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeyringError::Random)?;
    let id = KeyId::of(&bytes);
    Ok((Secret::new(hex::encode(bytes)), id))
}
