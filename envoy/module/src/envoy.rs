//! Safe wrappers over the ABI's callbacks: one HTTP stream as the filter
//! sees it ([`Stream`]), the scheduler that brings work back to its worker
//! ([`Scheduler`]), Envoy's log ([`log`]) and stats ([`define_stat`]).
//!
//! Every pointer Envoy hands a hook is valid for that hook's duration
//! only; a [`Stream`] is made per hook call and never kept.

use std::sync::Arc;

use crate::abi::*;
use crate::config::RouteSettings;
use crate::request::Connection;

/// Envoy's log levels, as gatehouse's events map onto them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warning`.
    Warn,
    /// `error`.
    Error,
}

/// Writes one line to Envoy's log, if Envoy logs at `level`.
pub fn log(level: LogLevel, line: &[u8]) {
    let level = match level {
        LogLevel::Trace => LOG_TRACE,
        LogLevel::Debug => LOG_DEBUG,
        LogLevel::Info => LOG_INFO,
        LogLevel::Warn => LOG_WARN,
        LogLevel::Error => LOG_ERROR,
    };
    // SAFETY: both callbacks take plain values and borrow `line` for the
    // call only; Envoy's logger is thread-safe (any thread may log).
    unsafe {
        if envoy_dynamic_module_callback_log_enabled(level) {
            envoy_dynamic_module_callback_log_v2(
                level,
                ModuleBuffer::of(line),
                ModuleBuffer::of(b"gatehouse"),
                0,
            );
        }
    }
}

/// A kind of Envoy stat the module defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// A counter (`increment_counter`).
    Counter,
    /// A histogram (`record_histogram_value`).
    Histogram,
}

/// The id of a stat defined on a filter configuration, with its label
/// count (every use must give exactly that many values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatId {
    id: usize,
    labels: usize,
    kind: StatKind,
}

/// Defines a labelled stat on the filter configuration Envoy is building.
/// Envoy allows this only during `config_new`; its refusal is returned.
///
/// # Safety
/// `config` must be the `filter_config_envoy_ptr` of the `config_new`
/// call being run.
pub unsafe fn define_stat(
    config: FilterConfigEnvoyPtr,
    kind: StatKind,
    name: &str,
    labels: &[&str],
) -> Result<StatId, MetricsResult> {
    let names: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    let define = match kind {
        StatKind::Counter => envoy_dynamic_module_callback_http_filter_config_define_counter,
        StatKind::Histogram => envoy_dynamic_module_callback_http_filter_config_define_histogram,
    };
    // SAFETY: the caller's promise for `config`; `name` and `names` are
    // borrowed for the call only (Envoy copies them into its symbol table).
    let result = unsafe {
        define(
            config,
            ModuleBuffer::of(name.as_bytes()),
            names.as_ptr(),
            names.len(),
            &mut id,
        )
    };
    match result {
        METRICS_SUCCESS => Ok(StatId {
            id,
            labels: labels.len(),
            kind,
        }),
        refused => Err(refused),
    }
}

/// The bytes of an Envoy-owned buffer (empty for null).
///
/// # Safety
/// `b` must point at `b.length` readable bytes that outlive `'a`.
pub unsafe fn envoy_bytes<'a>(b: EnvoyBuffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(b.ptr, b.length) }
    }
}

/// Envoy's side of one HTTP stream, for the duration of one hook.
pub struct Stream(FilterEnvoyPtr);

impl Stream {
    /// Wraps the pointer a hook was given.
    ///
    /// # Safety
    /// `ptr` must be the `filter_envoy_ptr` of the hook being run, and the
    /// `Stream` must not outlive that call.
    pub unsafe fn new(ptr: FilterEnvoyPtr) -> Stream {
        Stream(ptr)
    }

    /// Calls `f` with every request header (name, value), in Envoy's
    /// order, borrowed from Envoy's header map: nothing is copied, and
    /// nothing may change a header while `f` runs (it has no `Stream`).
    pub fn with_request_headers<'h, T>(
        &'h self,
        f: impl FnOnce(&mut dyn Iterator<Item = (&'h [u8], &'h [u8])>) -> T,
    ) -> T {
        // SAFETY: `self.0` is the live stream (see `new`).
        let n =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, REQUEST_HEADER) };
        let mut headers = vec![EnvoyHttpHeader::EMPTY; n];
        // SAFETY: `headers` has room for the `n` entries Envoy reported.
        let ok = n > 0
            && unsafe {
                envoy_dynamic_module_callback_http_get_headers(
                    self.0,
                    REQUEST_HEADER,
                    headers.as_mut_ptr(),
                )
            };
        if !ok {
            headers.clear();
        }
        let mut pairs = headers.iter().map(|h| {
            // SAFETY: Envoy filled each entry with buffers into its header
            // map, which nothing changes while `f` runs.
            unsafe {
                (
                    envoy_bytes(EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    }),
                    envoy_bytes(EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    }),
                )
            }
        });
        f(&mut pairs)
    }

    /// The first value of request header `name`, copied out.
    pub fn request_header(&self, name: &[u8]) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: `name` is borrowed for the call; `out` is ours to fill.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                &mut out,
                0,
                std::ptr::null_mut(),
            )
        };
        // SAFETY: on success `out` points into Envoy's header map,
        // unchanged while we copy it.
        (ok && !out.ptr.is_null()).then(|| unsafe { envoy_bytes(out) }.to_vec())
    }

    /// Sets request header `name` to `value`, replacing every value.
    pub fn set_request_header(&self, name: &[u8], value: &[u8]) {
        // SAFETY: both buffers are borrowed for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            );
        }
    }

    /// Removes request header `name` (every value).
    pub fn remove_request_header(&self, name: &[u8]) {
        // SAFETY: `name` is borrowed for the call; a null value removes.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                REQUEST_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::NULL,
            );
        }
    }

    /// Appends response header `name: value` (in the response-headers hook).
    pub fn add_response_header(&self, name: &[u8], value: &[u8]) {
        // SAFETY: both buffers are borrowed for the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                RESPONSE_HEADER,
                ModuleBuffer::of(name),
                ModuleBuffer::of(value),
            );
        }
    }

    /// Answers the request here, with `status`, `headers` (a name may
    /// repeat) and `body`; `details` names the reason in Envoy's access
    /// log (`%RESPONSE_CODE_DETAILS%`).
    pub fn send_response(
        &self,
        status: u16,
        headers: &[(&str, String)],
        body: &[u8],
        details: &str,
    ) {
        let mut vector: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader::of(k.as_bytes(), v.as_bytes()))
            .collect();
        // SAFETY: the vector, its strings and `body` live across the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                vector.as_mut_ptr(),
                vector.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            );
        }
    }

    /// Sets `namespace.key = value` in the stream's dynamic metadata (for
    /// later filters' `filter_enabled_metadata`, access logs).
    pub fn set_metadata(&self, namespace: &str, key: &str, value: &str) {
        // SAFETY: the three buffers are borrowed for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.0,
                ModuleBuffer::of(namespace.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    /// Removes every request header whose name starts with `prefix`.
    pub fn remove_request_headers_starting(&self, prefix: &[u8]) {
        let starts = |name: &[u8]| {
            name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
        };
        // Copied out first: removing changes Envoy's map.
        let names: Vec<Vec<u8>> = self.with_request_headers(|headers| {
            headers
                .filter(|(name, _)| starts(name))
                .map(|(name, _)| name.to_vec())
                .collect()
        });
        for name in names {
            self.remove_request_header(&name);
        }
    }

    /// Makes Envoy choose the route again, on the headers as they are now.
    pub fn clear_route_cache(&self) {
        // SAFETY: `self.0` is the live stream; the call takes no buffers.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    /// Lets the request go on after a hook stopped it.
    pub fn continue_decoding(&self) {
        // SAFETY: called from the scheduled hook, on the stream's worker.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// A string attribute of the stream, copied out; `None` when absent
    /// or empty.
    fn attribute(&self, id: AttributeId) -> Option<String> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: `out` is ours to fill.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, id, &mut out)
        };
        // SAFETY: on success `out` is valid for this hook.
        let bytes = if ok { unsafe { envoy_bytes(out) } } else { &[] };
        (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
    }

    /// A boolean attribute of the stream.
    fn attribute_bool(&self, id: AttributeId) -> Option<bool> {
        let mut out = false;
        // SAFETY: `out` is ours to fill.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_bool(self.0, id, &mut out)
        };
        ok.then_some(out)
    }

    /// What the connection says about the peer: its address and, over
    /// mTLS, its certificate's principal and the SHA-256 of the
    /// certificate (to recognise it in `X-Forwarded-Client-Cert`).
    pub fn connection(&self) -> (Connection, Option<String>) {
        let mtls = self.attribute_bool(ATTR_CONNECTION_MTLS).unwrap_or(false);
        let principal = if mtls {
            self.attribute(ATTR_URI_SAN_PEER_CERTIFICATE)
                .or_else(|| self.attribute(ATTR_SUBJECT_PEER_CERTIFICATE))
        } else {
            None
        };
        let digest = if mtls {
            self.attribute(ATTR_SHA256_PEER_CERTIFICATE_DIGEST)
        } else {
            None
        };
        (
            Connection {
                source: self.attribute(ATTR_SOURCE_ADDRESS),
                principal,
                certificate: None,
            },
            digest,
        )
    }

    /// The route's settings, when the route has any.
    pub fn route_settings(&self) -> Option<Arc<RouteSettings>> {
        // SAFETY: the pointer is ours (a per-route config this module
        // made, see `hooks`), kept alive by Envoy while the route is.
        let ptr = unsafe { envoy_dynamic_module_callback_get_most_specific_route_config(self.0) };
        if ptr.is_null() {
            return None;
        }
        let ptr = ptr as *const RouteSettings;
        // SAFETY: `ptr` came from `Arc::into_raw` in the per-route hook and
        // that reference is only released by the per-route destroy hook,
        // so one more strong reference may be taken.
        unsafe {
            Arc::increment_strong_count(ptr);
            Some(Arc::from_raw(ptr))
        }
    }

    /// Adds `value` to `stat` (a counter is incremented by it, a histogram
    /// records it) under `labels`, one value per label it was defined with.
    /// A wrong label count is not sent (Envoy would refuse it).
    pub fn record_stat<const N: usize>(&self, stat: StatId, labels: [&str; N], value: u64) {
        if N != stat.labels {
            return;
        }
        let values = labels.map(|l| ModuleBuffer::of(l.as_bytes()));
        let record = match stat.kind {
            StatKind::Counter => envoy_dynamic_module_callback_http_filter_increment_counter,
            StatKind::Histogram => envoy_dynamic_module_callback_http_filter_record_histogram_value,
        };
        // SAFETY: a hook's stream pointer; `stat` was defined on the
        // configuration this stream belongs to; the values are borrowed for
        // the call only.
        unsafe { record(self.0, stat.id, values.as_ptr(), N, value) };
    }

    /// A scheduler for this stream.
    pub fn scheduler(&self) -> Scheduler {
        // SAFETY: called from a hook on the stream's worker.
        Scheduler(unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) })
    }
}

/// Brings an event back to the worker of the stream it was made for
/// (`on_http_filter_scheduled`). Deleted when dropped.
pub struct Scheduler(SchedulerPtr);

// SAFETY: Envoy documents commit as callable from any thread; deletion
// happens once, in `Drop`, and the filter's lock orders it after any
// commit (see `filter::Waiting`).
unsafe impl Send for Scheduler {}

impl Scheduler {
    /// Schedules `event` on the stream's worker; nothing if the stream is
    /// gone.
    pub fn commit(&self, event: u64) {
        if !self.0.is_null() {
            // SAFETY: not deleted yet (deletion consumes `self`).
            unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, event) }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: made by `scheduler_new`, deleted exactly once here.
            unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
        }
    }
}
