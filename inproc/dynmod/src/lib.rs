//! Spike (issue 17): gatehouse's JWT decision inside Envoy's worker, as a
//! native module for Envoy's `envoy.filters.http.dynamic_modules` HTTP
//! filter. On request headers it finds the bearer token, verifies it with
//! gatehouse's own `JwtVerifier` (and its verified-token cache), then either
//! strips client copies of `x-auth-request-*` and sets the identity headers,
//! or answers 401 with a `WWW-Authenticate: Bearer` challenge.
//!
//! `abi` declares the C ABI subset; this file exports the event hooks Envoy
//! resolves with `dlsym` when it loads an HTTP filter config.

mod abi;
mod config;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use abi::*;
use config::FilterConfig;
use gatehouse::check::authn::jwt::JwtError;
use gatehouse::model::identity::Identity;
use gatehouse::secret::Secret;

const IDENTITY_PREFIX: &[u8] = b"x-auth-request-";

// ------------------------------------------------------------- program ----

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    ABI_VERSION.as_ptr()
}

// -------------------------------------------------------- filter config ----

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    let bytes = unsafe { envoy_bytes(config) };
    match FilterConfig::from_json(bytes) {
        Ok(cfg) => Box::into_raw(Box::new(cfg)) as FilterConfigModulePtr,
        Err(e) => {
            // Envoy rejects the config on null; say why on stderr (the
            // log callback would do, declared later).
            eprintln!("gatehouse dynamic module: {e}");
            std::ptr::null()
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: FilterConfigModulePtr) {
    if !config.is_null() {
        drop(unsafe { Box::from_raw(config as *mut FilterConfig) });
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> PerRouteConfigModulePtr {
    // Per-route config is not part of the spike: refuse it.
    std::ptr::null()
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: PerRouteConfigModulePtr,
) {
}

// -------------------------------------------------------------- filter ----

/// The per-stream filter needs no state of its own: its module pointer is
/// the config's (Envoy keeps the config alive while any stream uses it), so
/// a request allocates nothing here.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: FilterConfigModulePtr,
    _envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    config
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    let config = unsafe { &*(module as *const FilterConfig) };
    let stream = Stream(envoy);
    match decide(config, &stream) {
        Ok(identity) => {
            stream.strip_identity_headers();
            stream.set(b"x-auth-request-user", identity.username.as_deref().unwrap_or(&identity.subject).as_bytes());
            if let Some(email) = &identity.email {
                stream.set(b"x-auth-request-email", email.as_bytes());
            }
            if !identity.groups.is_empty() {
                stream.set(b"x-auth-request-groups", identity.groups.join(",").as_bytes());
            }
            HEADERS_CONTINUE
        }
        Err(Denial::Unauthenticated(reason)) => {
            let challenge = match reason {
                None => config.challenge.clone(),
                Some(e) => format!(
                    "{}, error=\"invalid_token\", error_description=\"invalid token: {e}\"",
                    config.challenge
                ),
            };
            stream.send(401, &[(b"www-authenticate", challenge.as_bytes())], b"", b"gatehouse_unauthenticated");
            HEADERS_STOP_ITERATION
        }
        Err(Denial::Unavailable) => {
            stream.send(503, &[], b"", b"gatehouse_keys_pending");
            HEADERS_STOP_ITERATION
        }
    }
}

enum Denial {
    /// 401: no bearer token (None) or an invalid one.
    Unauthenticated(Option<JwtError>),
    /// 503: verification would have to wait (a key fetch); never with
    /// local key sets.
    Unavailable,
}

fn decide(config: &FilterConfig, stream: &Stream) -> Result<Identity, Denial> {
    let Some(value) = stream.get(b"authorization") else {
        return Err(Denial::Unauthenticated(None));
    };
    let Some(token) = bearer(value) else {
        return Err(Denial::Unauthenticated(None));
    };
    let token = Secret::new(token);
    match poll_once(config.verifier.verify(&token)) {
        Poll::Ready(Ok(identity)) => Ok(identity),
        Poll::Ready(Err(e)) => Err(Denial::Unauthenticated(Some(e))),
        Poll::Pending => Err(Denial::Unavailable),
    }
}

/// `Bearer <token>` (scheme case-insensitive), as text.
fn bearer(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Polls `fut` once with a waker that does nothing: gatehouse's verifier
/// awaits only a key fetch, which local key sets never start.
fn poll_once<F: Future>(fut: F) -> Poll<F::Output> {
    let fut = pin!(fut);
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

/// Envoy's side of one HTTP stream, through the ABI's callbacks.
struct Stream(FilterEnvoyPtr);

impl Stream {
    /// The first value of request header `key` (lower-case). Valid until a
    /// header of the stream is changed.
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let mut out = EnvoyBuffer { ptr: std::ptr::null(), length: 0 };
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                REQUEST_HEADER,
                ModuleBuffer::of(key),
                &mut out,
                0,
                std::ptr::null_mut(),
            )
        };
        (ok && !out.ptr.is_null()).then(|| unsafe { envoy_bytes(out) })
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                REQUEST_HEADER,
                ModuleBuffer::of(key),
                ModuleBuffer::of(value),
            );
        }
    }

    fn remove(&self, key: &[u8]) {
        unsafe {
            envoy_dynamic_module_callback_http_set_header(self.0, REQUEST_HEADER, ModuleBuffer::of(key), ModuleBuffer::NULL);
        }
    }

    /// Removes every request header named `x-auth-request-*`: the client
    /// must not choose the identity the upstream sees.
    fn strip_identity_headers(&self) {
        let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, REQUEST_HEADER) };
        if n == 0 {
            return;
        }
        let empty = EnvoyHttpHeader { key_ptr: std::ptr::null(), key_length: 0, value_ptr: std::ptr::null(), value_length: 0 };
        let mut headers = vec![empty; n];
        if !unsafe { envoy_dynamic_module_callback_http_get_headers(self.0, REQUEST_HEADER, headers.as_mut_ptr()) } {
            return;
        }
        // Copy the names out first: removing invalidates Envoy's buffers.
        let spoofed: Vec<Vec<u8>> = headers
            .iter()
            .filter_map(|h| {
                let key = unsafe { envoy_bytes(EnvoyBuffer { ptr: h.key_ptr, length: h.key_length }) };
                (key.len() >= IDENTITY_PREFIX.len() && key[..IDENTITY_PREFIX.len()].eq_ignore_ascii_case(IDENTITY_PREFIX))
                    .then(|| key.to_ascii_lowercase())
            })
            .collect();
        for key in spoofed {
            self.remove(&key);
        }
    }

    fn send(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8], details: &[u8]) {
        let mut hs: Vec<ModuleHttpHeader> = headers.iter().map(|(k, v)| ModuleHttpHeader::of(k, v)).collect();
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                hs.as_mut_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details),
            );
        }
    }
}

/// The bytes of an Envoy-owned buffer (empty for null).
unsafe fn envoy_bytes<'a>(b: EnvoyBuffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 { &[] } else { unsafe { std::slice::from_raw_parts(b.ptr, b.length) } }
}

// ------------------------------------- hooks Envoy requires, unused here ----

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(_: FilterEnvoyPtr, _: FilterModulePtr, _: bool) -> BodyStatus {
    BODY_CONTINUE
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_: FilterEnvoyPtr, _: FilterModulePtr) -> TrailersStatus {
    TRAILERS_CONTINUE
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(_: FilterEnvoyPtr, _: FilterModulePtr, _: bool) -> HeadersStatus {
    HEADERS_CONTINUE
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(_: FilterEnvoyPtr, _: FilterModulePtr, _: bool) -> BodyStatus {
    BODY_CONTINUE
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_: FilterEnvoyPtr, _: FilterModulePtr) -> TrailersStatus {
    TRAILERS_CONTINUE
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: FilterEnvoyPtr, _: FilterModulePtr) {}
/// Nothing to free: the module pointer is the config's.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_: FilterModulePtr) {}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: FilterEnvoyPtr, _: FilterModulePtr, _: u64, _: CalloutResult,
    _: *mut EnvoyHttpHeader, _: usize, _: *mut EnvoyBuffer, _: usize,
) {
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: FilterEnvoyPtr, _: FilterModulePtr, _: u64, _: *mut EnvoyHttpHeader, _: usize, _: bool,
) {
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: FilterEnvoyPtr, _: FilterModulePtr, _: u64, _: *const EnvoyBuffer, _: usize, _: bool,
) {
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: FilterEnvoyPtr, _: FilterModulePtr, _: u64, _: *mut EnvoyHttpHeader, _: usize,
) {
}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_: FilterEnvoyPtr, _: FilterModulePtr, _: u64) {}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(_: FilterEnvoyPtr, _: FilterModulePtr, _: u64, _: StreamResetReason) {}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: FilterEnvoyPtr, _: FilterModulePtr, _: u64) {}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(_: FilterEnvoyPtr, _: FilterModulePtr) {}
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(_: FilterEnvoyPtr, _: FilterModulePtr) {}
