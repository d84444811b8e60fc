//! An OAuth-style form endpoint on 127.0.0.1 for tests (introspection,
//! token exchange): every POST to `/endpoint` is recorded (its form and
//! its HTTP Basic credentials, decoded as RFC 6749 2.3.1 encodes them)
//! and answered by the test's responder, after an optional delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use serde_json::Value;

/// One request the endpoint received.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The form's fields.
    pub form: HashMap<String, String>,
    /// The client id and secret of an `Authorization: Basic` header.
    pub basic: Option<(String, String)>,
}

impl Received {
    /// A form field, or "".
    pub fn field(&self, name: &str) -> &str {
        self.form.get(name).map_or("", String::as_str)
    }

    /// The client's id and secret, from Basic or from the form.
    pub fn client(&self) -> (String, String) {
        match &self.basic {
            Some(pair) => pair.clone(),
            None => (
                self.field("client_id").to_string(),
                self.field("client_secret").to_string(),
            ),
        }
    }
}

type Responder = dyn Fn(&Received) -> (u16, Value) + Send + Sync;

struct Shared {
    responder: Box<Responder>,
    received: Mutex<Vec<Received>>,
    delay: Mutex<Duration>,
}

/// A running endpoint, stopped when dropped.
pub struct FormServer {
    /// `http://127.0.0.1:PORT/endpoint`.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FormServer {
    /// Serves `/endpoint`, answering each request with `responder`'s
    /// status and JSON body.
    pub async fn start(
        responder: impl Fn(&Received) -> (u16, Value) + Send + Sync + 'static,
    ) -> std::io::Result<FormServer> {
        let shared = Arc::new(Shared {
            responder: Box::new(responder),
            received: Mutex::new(Vec::new()),
            delay: Mutex::new(Duration::ZERO),
        });
        let app = Router::new()
            .route("/endpoint", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/endpoint", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FormServer { url, shared, task })
    }

    /// Answers after `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// How many requests arrived.
    pub fn calls(&self) -> usize {
        self.received().len()
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FormServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> (StatusCode, axum::Json<Value>) {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((decode(id), decode(secret)))
        });
    let received = Received { form, basic };
    shared
        .received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(received.clone());
    let delay = *shared.delay.lock().unwrap_or_else(|e| e.into_inner());
    tokio::time::sleep(delay).await;
    let (status, body) = (shared.responder)(&received);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body))
}
