//! The background tasks of the serving engine: one refresh per remote key
//! set and one upkeep of the store (purge, health ping). A reload keeps
//! the tasks of what it carries over, starts those of what is new and
//! stops the rest.

use std::sync::Arc;

use tokio::task::AbortHandle;

use crate::check::authn::jwt::keys::IssuerKeys;
use crate::check::pipeline::Engine;
use crate::store::Store;

/// Running background tasks, stopped when dropped.
pub(super) struct Tasks {
    refresh: Vec<(Arc<IssuerKeys>, AbortHandle)>,
    purge: (Arc<dyn Store>, AbortHandle),
}

impl Tasks {
    /// Starts `engine`'s key refreshes and store upkeep.
    pub(super) fn start(engine: &Engine) -> Tasks {
        let mut tasks = Tasks {
            refresh: Vec::new(),
            purge: (
                engine.store.clone(),
                crate::store::spawn_upkeep(engine.store.clone()).abort_handle(),
            ),
        };
        tasks.start_new(engine);
        tasks
    }

    /// Starts refreshing `engine`'s remote key sets that no task refreshes
    /// yet, and returns them.
    pub(super) fn start_new(&mut self, engine: &Engine) -> Vec<Arc<IssuerKeys>> {
        let mut started = Vec::new();
        for keys in engine.authn.key_sets() {
            if !keys.is_remote() || self.refresh.iter().any(|(k, _)| Arc::ptr_eq(k, &keys)) {
                continue;
            }
            let task = tokio::spawn(keys.clone().refresh_forever()).abort_handle();
            self.refresh.push((keys.clone(), task));
            started.push(keys);
        }
        started
    }

    /// Stops refreshing `keys`.
    pub(super) fn stop(&mut self, keys: &[Arc<IssuerKeys>]) {
        self.refresh.retain(|(k, task)| {
            let stop = keys.iter().any(|other| Arc::ptr_eq(k, other));
            if stop {
                task.abort();
            }
            !stop
        });
    }

    /// Keeps only the tasks `engine` needs: stops refreshing key sets it
    /// no longer uses, and purges its store instead of the old one.
    pub(super) fn adopt(&mut self, engine: &Engine) {
        let used = engine.authn.key_sets();
        let unused: Vec<_> = self
            .refresh
            .iter()
            .filter(|(k, _)| !used.iter().any(|u| Arc::ptr_eq(k, u)))
            .map(|(k, _)| k.clone())
            .collect();
        self.stop(&unused);
        self.start_new(engine);
        if !Arc::ptr_eq(&self.purge.0, &engine.store) {
            self.purge.1.abort();
            self.purge = (
                engine.store.clone(),
                crate::store::spawn_upkeep(engine.store.clone()).abort_handle(),
            );
        }
    }

    /// How many key sets are being refreshed.
    pub(super) fn refreshing(&self) -> usize {
        self.refresh.len()
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for (_, task) in &self.refresh {
            task.abort();
        }
        self.purge.1.abort();
    }
}
