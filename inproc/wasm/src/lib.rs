//! gatehouse's bearer-token decision as a proxy-wasm HTTP filter (spike for
//! issue 17). One root context per worker (Envoy runs one VM per worker
//! thread) owns the parsed keys and the cache of verified tokens; every
//! request's HTTP context borrows them through an `Rc`.
//!
//! On request headers: strip the client's `x-auth-request-*`, find the
//! bearer token, look its SHA-256 up in the cache, else verify it; allowed
//! requests go on with `x-auth-request-user` (and `-email`, `-groups`),
//! the others get gatehouse's 401 from Envoy, without reaching upstream.

pub mod core;
mod rsa_verify;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::core::{Cache, Config, Deny, Identity, Verifier, bearer};

const PREFIX: &str = "x-auth-request-";

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root { state: None }));
}}

/// What a worker's requests share.
struct State {
    verifier: Verifier,
    cache: RefCell<Cache>,
    realm: String,
    noop: bool,
}

struct Root {
    state: Option<Rc<State>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(raw) = self.get_plugin_configuration() else {
            log::error!("gatehouse-wasm: no plugin configuration");
            return false;
        };
        let cfg: Config = match serde_json::from_slice(&raw) {
            Ok(c) => c,
            Err(e) => {
                log::error!("gatehouse-wasm: configuration: {e}");
                return false;
            }
        };
        match Verifier::new(&cfg) {
            Ok(verifier) => {
                self.state = Some(Rc::new(State {
                    verifier,
                    cache: RefCell::new(Cache::new(cfg.cache_size)),
                    realm: cfg.realm,
                    noop: cfg.noop,
                }));
                true
            }
            Err(e) => {
                log::error!("gatehouse-wasm: configuration: {e}");
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request {
            state: self.state.clone(),
        }))
    }
}

struct Request {
    state: Option<Rc<State>>,
}

impl Context for Request {}

impl Request {
    fn now(&self) -> u64 {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn decide(&self, state: &State, authorization: Option<&str>) -> Result<Rc<Identity>, Deny> {
        let token = authorization.and_then(bearer).ok_or(Deny::NoCredential)?;
        let now = self.now();
        let key = Cache::key(token);
        if let Some(id) = state
            .cache
            .borrow_mut()
            .get(&key, now, state.verifier.leeway())
        {
            return Ok(id);
        }
        let id = Rc::new(state.verifier.verify(token, now)?);
        state.cache.borrow_mut().insert(key, id.clone());
        Ok(id)
    }

    fn deny(&self, state: &State, deny: &Deny) {
        let (challenge, body) = deny.challenge(&state.realm);
        self.send_http_response(
            401,
            vec![
                ("www-authenticate", challenge.as_str()),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        );
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _n: usize, _end: bool) -> Action {
        let Some(state) = self.state.clone() else {
            // Not configured: fail closed.
            self.send_http_response(500, vec![], Some(b"gatehouse-wasm: not configured"));
            return Action::Pause;
        };
        if state.noop {
            return Action::Continue;
        }
        // One host call for all headers: the credential, and the identity
        // headers a client may have sent itself (stripped whatever happens).
        let mut authorization: Option<String> = None;
        let mut authorizations = 0;
        let mut spoofed: Vec<String> = Vec::new();
        for (name, value) in self.get_http_request_headers() {
            if name == "authorization" {
                authorizations += 1;
                authorization = Some(value);
            } else if name.starts_with(PREFIX) {
                spoofed.push(name);
            }
        }
        for name in &spoofed {
            self.set_http_request_header(name, None);
        }
        let decision = if authorizations > 1 {
            Err(Deny::InvalidToken("more than one authorization header"))
        } else {
            self.decide(&state, authorization.as_deref())
        };
        match decision {
            Ok(id) => {
                self.set_http_request_header("x-auth-request-user", Some(&id.user));
                if let Some(email) = &id.email {
                    self.set_http_request_header("x-auth-request-email", Some(email));
                }
                if let Some(groups) = &id.groups {
                    self.set_http_request_header("x-auth-request-groups", Some(groups));
                }
                Action::Continue
            }
            Err(deny) => {
                self.deny(&state, &deny);
                Action::Pause
            }
        }
    }
}
