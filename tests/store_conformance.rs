//! The store conformance suite (`gatehouse::testkit::store`) against the
//! memory store, bare and sealed (values encrypted by `store::sealed`).
//! The Redis runs are in `tests/store_redis.rs`.

use std::sync::Arc;

use gatehouse::store::memory::MemoryStore;
use gatehouse::store::sealed::{Keyring, SealedStore};
use gatehouse::testkit::store::run_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    run_all(Arc::new(MemoryStore::new(10_000))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_memory_store_conforms() {
    let keys = Keyring::random().expect("random key");
    run_all(Arc::new(SealedStore::new(
        Arc::new(MemoryStore::new(10_000)),
        keys,
    )))
    .await;
}
