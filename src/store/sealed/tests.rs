use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::store::memory::MemoryStore;
use crate::testkit::TempDir;

const MINUTE: Duration = Duration::from_secs(60);
const OLD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NEW: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn ring(lines: &[&str]) -> Keyring {
    Keyring::parse(&lines.join("\n")).expect("valid key file")
}

/// A sealed store over memory, and the memory store itself (to look at or
/// tamper with the raw bytes).
fn sealed(keys: Keyring) -> (SealedStore, Arc<MemoryStore>) {
    let inner = Arc::new(MemoryStore::new(1000));
    (SealedStore::new(inner.clone(), keys), inner)
}

#[tokio::test]
async fn values_round_trip_and_the_inner_store_sees_only_ciphertext() {
    let (store, inner) = sealed(ring(&[NEW]));
    let plain = b"api-token-record: alice, scopes read:all, secret hash";
    store.set("api-token:k1", plain, MINUTE).await.expect("set");
    assert_eq!(store.get("api-token:k1").await, Ok(Some(plain.to_vec())));

    let raw = inner.get("api-token:k1").await.expect("get").expect("raw");
    assert_eq!(raw.len(), plain.len() + OVERHEAD);
    assert_eq!(raw[0], VERSION);
    assert_eq!(&raw[1..5], &KeyId::of(&hex::decode(NEW).expect("hex")).0);
    for window in [&b"alice"[..], b"read:all", b"secret", b"api-token"] {
        assert!(
            !raw.windows(window.len()).any(|w| w == window),
            "{:?} leaked into the stored bytes",
            String::from_utf8_lossy(window)
        );
    }
    // A fresh nonce each time: the same value seals differently.
    store.set("api-token:k2", plain, MINUTE).await.expect("set");
    let raw2 = inner.get("api-token:k2").await.expect("get").expect("raw");
    assert_ne!(raw[5..17], raw2[5..17], "nonces differ");
}

#[tokio::test]
async fn set_if_absent_and_take_seal_too() {
    let (store, inner) = sealed(ring(&[NEW]));
    assert_eq!(
        store.set_if_absent("link-used:j1", b"used", MINUTE).await,
        Ok(true)
    );
    let raw = inner.get("link-used:j1").await.expect("get").expect("raw");
    assert!(!raw.windows(4).any(|w| w == b"used"));
    assert_eq!(
        store.set_if_absent("link-used:j1", b"again", MINUTE).await,
        Ok(false)
    );
    assert_eq!(store.take("link-used:j1").await, Ok(Some(b"used".to_vec())));
    assert_eq!(store.take("link-used:j1").await, Ok(None));
}

#[tokio::test]
async fn rotation_old_values_open_while_their_key_is_listed() {
    let (before, inner) = sealed(ring(&[OLD]));
    before
        .set("session:s", b"alice", MINUTE)
        .await
        .expect("set");

    // The new key first, the old one second: old values still open, new
    // values are sealed under the new key.
    let rotated = SealedStore::new(inner.clone(), ring(&[NEW, OLD]));
    assert_eq!(rotated.get("session:s").await, Ok(Some(b"alice".to_vec())));
    rotated.set("session:t", b"bob", MINUTE).await.expect("set");
    let raw = inner.get("session:t").await.expect("get").expect("raw");
    assert_eq!(&raw[1..5], &KeyId::of(&hex::decode(NEW).expect("hex")).0);
    // A compare-and-set of an old value re-seals it under the new key.
    assert_eq!(
        rotated
            .compare_and_set("session:s", b"alice", b"alice2", MINUTE)
            .await,
        Ok(true)
    );
    let raw = inner.get("session:s").await.expect("get").expect("raw");
    assert_eq!(&raw[1..5], &KeyId::of(&hex::decode(NEW).expect("hex")).0);

    // The old key dropped: what it sealed reads as absent.
    before
        .set("session:u", b"carol", MINUTE)
        .await
        .expect("set");
    let after = SealedStore::new(inner.clone(), ring(&[NEW]));
    assert_eq!(after.get("session:u").await, Ok(None));
    assert_eq!(
        after
            .compare_and_set("session:u", b"carol", b"x", MINUTE)
            .await,
        Ok(false)
    );
    assert_eq!(after.take("session:u").await, Ok(None));
    assert_eq!(after.get("session:t").await, Ok(Some(b"bob".to_vec())));
}

#[tokio::test]
async fn a_tampered_byte_reads_as_absent() {
    let (store, inner) = sealed(ring(&[NEW]));
    store
        .set("api-token:k", b"record", MINUTE)
        .await
        .expect("set");
    let raw = inner.get("api-token:k").await.expect("get").expect("raw");
    // Every byte position: header, nonce, ciphertext and tag are all covered.
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        inner.set("api-token:k", &bad, MINUTE).await.expect("set");
        assert_eq!(store.get("api-token:k").await, Ok(None), "byte {i} flipped");
    }
    let mut short = raw.clone();
    short.truncate(OVERHEAD - 1);
    inner.set("api-token:k", &short, MINUTE).await.expect("set");
    assert_eq!(store.get("api-token:k").await, Ok(None), "truncated");
}

#[tokio::test]
async fn a_value_moved_to_another_key_reads_as_absent() {
    let (store, inner) = sealed(ring(&[NEW]));
    store
        .set("api-token:alice", b"admin", MINUTE)
        .await
        .expect("set");
    let raw = inner
        .get("api-token:alice")
        .await
        .expect("get")
        .expect("raw");
    inner
        .set("api-token:mallory", &raw, MINUTE)
        .await
        .expect("copy");
    assert_eq!(store.get("api-token:mallory").await, Ok(None));
    assert_eq!(
        store.get("api-token:alice").await,
        Ok(Some(b"admin".to_vec()))
    );
}

#[test]
fn the_version_byte_is_checked() {
    let keys = ring(&[NEW]);
    let mut sealed = keys.seal(b"k", b"v").expect("seal");
    assert_eq!(sealed[0], VERSION);
    sealed[0] = 2;
    assert_eq!(keys.open(b"k", &sealed), Err(OpenError::Version(2)));
    assert_eq!(keys.open(b"k", &[]), Err(OpenError::Truncated));
}

#[test]
fn open_errors_name_the_key_id() {
    let old = ring(&[OLD]);
    let sealed = old.seal(b"k", b"v").expect("seal");
    let id = KeyId::of(&hex::decode(OLD).expect("hex"));
    assert_eq!(
        ring(&[NEW]).open(b"k", &sealed),
        Err(OpenError::UnknownKey(id))
    );
    assert_eq!(old.open(b"other", &sealed), Err(OpenError::Rejected(id)));
    assert_eq!(OpenError::UnknownKey(id).key_id(), Some(id));
    assert_eq!(id.to_string().len(), 8);
}

#[tokio::test]
async fn compare_and_set_compares_plaintexts() {
    let (store, inner) = sealed(ring(&[NEW]));
    store.set("cas:k", b"v1", MINUTE).await.expect("set");
    // The stored bytes are never the plaintext, so an inner CAS expecting
    // the plaintext would fail: the wrapper must open and compare.
    assert_eq!(
        store.compare_and_set("cas:k", b"v", b"x", MINUTE).await,
        Ok(false),
        "a prefix is not equal"
    );
    assert_eq!(
        store.compare_and_set("cas:k", b"v1x", b"x", MINUTE).await,
        Ok(false),
        "a longer value is not equal"
    );
    assert_eq!(
        store.compare_and_set("cas:k", b"v2", b"x", MINUTE).await,
        Ok(false),
        "same length, other bytes"
    );
    assert_eq!(
        store.compare_and_set("cas:k", b"v1", b"v2", MINUTE).await,
        Ok(true)
    );
    assert_eq!(store.get("cas:k").await, Ok(Some(b"v2".to_vec())));
    // Swapped under the raw bytes it read: a concurrent writer in between
    // makes the inner compare-and-set fail.
    let raw = inner.get("cas:k").await.expect("get").expect("raw");
    assert_eq!(
        inner
            .compare_and_set("cas:k", &raw, b"someone else", MINUTE)
            .await,
        Ok(true)
    );
}

#[test]
fn the_comparison_is_constant_time() {
    // `compare_and_set` compares with `subtle::ConstantTimeEq` (no early
    // exit on the first differing byte); this pins that the source uses it.
    let source = include_str!("mod.rs");
    assert!(source.contains("current.as_slice().ct_eq(expected)"));
    assert!(!source.contains("current == expected"));
}

#[test]
fn key_files_allow_comments_blank_lines_and_whitespace() {
    let text = format!(
        "# rotated 2025-01\n\n  {NEW}  \n# old\n{}\n",
        OLD.to_uppercase()
    );
    let keys = Keyring::parse(&text).expect("parses");
    assert_eq!(
        keys.ids(),
        vec![
            KeyId::of(&hex::decode(NEW).expect("hex")),
            KeyId::of(&hex::decode(OLD).expect("hex"))
        ]
    );
}

#[test]
fn key_file_errors_name_the_line_and_never_the_key() {
    let cases = [
        (
            format!("{NEW}\n{}", &OLD[..63]),
            "line 2: expected 64 hex characters, found 63",
        ),
        (
            format!("# c\n\n{OLD}0"),
            "line 3: expected 64 hex characters, found 65",
        ),
        (format!("{}zz", &OLD[..62]), "line 1: not hexadecimal"),
        (format!("{NEW}\n{OLD}\n{NEW}"), "line 3: the same key"),
        ("# only a comment\n\n".to_string(), "no key"),
        (String::new(), "no key"),
    ];
    for (text, expected) in cases {
        let err = Keyring::parse(&text).expect_err(expected).to_string();
        assert!(err.starts_with(expected), "{err:?} for {expected:?}");
        for secret in [&OLD[..16], &NEW[..16], &OLD[16..32], &NEW[48..]] {
            assert!(!err.contains(secret), "{err:?} shows key material");
        }
    }
    let duplicate = Keyring::parse(&format!("{NEW}\n{}", NEW.to_uppercase()))
        .expect_err("same key in another case");
    assert!(matches!(
        duplicate,
        KeyringError::Duplicate {
            line: 2,
            first: 1,
            ..
        }
    ));
}

#[test]
fn the_keyring_debug_shows_ids_only() {
    let debug = format!("{:?}", ring(&[NEW, OLD]));
    assert!(debug.contains(&KeyId::of(&hex::decode(NEW).expect("hex")).to_string()));
    assert!(!debug.contains(&NEW[..16]) && !debug.contains(&OLD[..16]));
}

#[test]
fn random_keyrings_differ_and_generated_keys_parse() {
    let (a, b) = (
        Keyring::random().expect("random"),
        Keyring::random().expect("random"),
    );
    assert_ne!(a.ids(), b.ids());
    let sealed = a.seal(b"k", b"v").expect("seal");
    assert!(b.open(b"k", &sealed).is_err());

    let (text, id) = generate_key().expect("generate");
    assert_eq!(text.expose().len(), KEY_HEX_CHARS);
    let parsed = Keyring::parse(text.expose()).expect("generated key parses");
    assert_eq!(parsed.ids(), vec![id]);
}

fn text_source() -> ConfigSource {
    ConfigSource::Text(String::new())
}

#[test]
fn configured_keys_from_a_file_or_random_for_memory() {
    let dir = TempDir::new("keys");
    let file = dir.path().join("store.key");
    std::fs::write(&file, format!("{NEW}\n{OLD}\n")).expect("write");
    let config = StoreConfig {
        encryption_key_file: Some(file.clone()),
        ..Default::default()
    };
    let keys = configured_keys(&config, &text_source()).expect("loads");
    assert_eq!(keys.ids().len(), 2);
    // Relative to the configuration file's directory.
    let relative = StoreConfig {
        encryption_key_file: Some("store.key".into()),
        ..Default::default()
    };
    let source = ConfigSource::File(dir.path().join("gatehouse.yaml"));
    assert_eq!(
        configured_keys(&relative, &source).expect("loads").ids(),
        keys.ids()
    );
    // No file with memory: one random key.
    let memory = configured_keys(&StoreConfig::default(), &text_source()).expect("random");
    assert_eq!(memory.ids().len(), 1);
}

#[test]
fn configured_keys_errors_name_the_setting() {
    let dir = TempDir::new("errors");
    let missing = StoreConfig {
        encryption_key_file: Some(dir.path().join("absent.key")),
        ..Default::default()
    };
    let err = configured_keys(&missing, &text_source())
        .expect_err("unreadable")
        .to_string();
    assert!(err.contains("store.encryption_key_file"), "{err}");
    assert!(err.contains("absent.key"), "{err}");

    let file = dir.path().join("bad.key");
    std::fs::write(&file, format!("{NEW}\nnot a key\n")).expect("write");
    let bad = StoreConfig {
        encryption_key_file: Some(file),
        ..Default::default()
    };
    let err = configured_keys(&bad, &text_source())
        .expect_err("invalid")
        .to_string();
    assert!(
        err.contains("store.encryption_key_file") && err.contains("line 2"),
        "{err}"
    );
    assert!(!err.contains(&NEW[..16]), "{err}");

    let redis = StoreConfig {
        redis: Some(crate::config::RedisStoreConfig::default()),
        ..Default::default()
    };
    let err = configured_keys(&redis, &text_source())
        .expect_err("required")
        .to_string();
    assert!(
        err.contains("store.encryption_key_file") && err.contains("required with store.redis"),
        "{err}"
    );
}

/// A log line about an unopenable value names the namespace and key id,
/// never the value or the rest of the key.
#[test]
fn unopenable_values_are_logged_without_the_value() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let old = ring(&[OLD]);
    let store = SealedStore::new(Arc::new(MemoryStore::new(10)), ring(&[NEW]));
    let raw = old
        .seal(b"api-token:secretish-id", b"plaintext-value")
        .expect("seal");
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(store.open("api-token:secretish-id", &raw), None);
    });
    let logged = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
    let id = KeyId::of(&hex::decode(OLD).expect("hex"));
    assert!(logged.contains("namespace=\"api-token\""), "{logged}");
    assert!(logged.contains(&format!("key_id={id}")), "{logged}");
    assert!(!logged.contains("plaintext-value"), "{logged}");
    assert!(!logged.contains("secretish-id"), "{logged}");
}
