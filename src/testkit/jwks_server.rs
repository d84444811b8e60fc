//! A JWKS endpoint on 127.0.0.1 for tests: serves a document that the
//! test can replace, and counts fetches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::Value;

#[derive(Default)]
struct Shared {
    doc: Mutex<Value>,
    hits: AtomicUsize,
}

/// A running JWKS server, stopped when dropped.
pub struct JwksServer {
    /// `http://127.0.0.1:PORT/jwks`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Serves `doc` at `/jwks` on an ephemeral port.
    pub async fn start(doc: Value) -> std::io::Result<JwksServer> {
        let shared = Arc::new(Shared {
            doc: Mutex::new(doc),
            hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks", get(serve))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/jwks", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(JwksServer { url, shared, task })
    }

    /// Serves `doc` from now on.
    pub fn set(&self, doc: Value) {
        *self.shared.doc.lock().unwrap_or_else(|e| e.into_inner()) = doc;
    }

    /// How many times the document was fetched.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    shared.hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(shared.doc.lock().unwrap_or_else(|e| e.into_inner()).clone())
}
