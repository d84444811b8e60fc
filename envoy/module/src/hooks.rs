//! The event hooks Envoy resolves by name when it loads the filter (every
//! one it requires, see `../ABI.md`). Each runs its body under
//! [`guard`]: a panic never crosses into Envoy; a request whose check
//! panicked is answered 500 (fail closed), and a configuration whose
//! building panicked is refused.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::abi::*;
use crate::config::{FilterSettings, RouteSettings};
use crate::envoy::{self, LogLevel, Stream, envoy_bytes};
use crate::filter::{FilterConfig, Next, StreamFilter};
use crate::stats::CheckStats;

/// Runs `body`, turning a panic into `fallback` and a log line.
fn guard<T>(hook: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    caught(hook, body).unwrap_or_else(|line| {
        envoy::log(LogLevel::Error, line.as_bytes());
        fallback
    })
}

/// Runs `body`; a panic becomes the line to log about it.
fn caught<T>(hook: &str, body: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(body))
        .map_err(|panic| format!("gatehouse: panic in {hook}: {}", panic_message(&*panic)))
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The stream behind a hook's module pointer.
///
/// # Safety
/// `module` must be a pointer `on_http_filter_new` returned and
/// `on_http_filter_destroy` has not freed; Envoy calls a stream's hooks on
/// one thread, one at a time.
unsafe fn stream_filter<'a>(module: FilterModulePtr) -> &'a mut StreamFilter {
    // SAFETY: the caller's promise; the pointer is a `Box<StreamFilter>`.
    unsafe { &mut *(module as *mut StreamFilter) }
}

// ------------------------------------------------------------- program ----

/// Loaded: names the ABI version this module was built against.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    ABI_VERSION.as_ptr()
}

// -------------------------------------------------------- filter config ----

/// Builds what Envoy's configuration bytes describe and hands Envoy an
/// `Arc` of it; null (Envoy refuses the configuration) with the reason in
/// Envoy's log.
fn publish<T>(
    what: &str,
    config: EnvoyBuffer,
    build: impl FnOnce(&[u8]) -> Result<T, String>,
) -> *const std::ffi::c_void {
    guard(what, std::ptr::null(), || {
        // SAFETY: Envoy's buffer, valid for this call.
        match build(unsafe { envoy_bytes(config) }) {
            Ok(built) => Arc::into_raw(Arc::new(built)).cast(),
            Err(e) => {
                let line = format!("gatehouse: {what} refused: {e}");
                envoy::log(LogLevel::Error, line.as_bytes());
                std::ptr::null()
            }
        }
    })
}

/// Drops Envoy's reference to what [`publish`] handed it.
///
/// # Safety
/// `ptr` is null or came from `publish::<T>`, and is released once.
unsafe fn release<T>(what: &str, ptr: *const std::ffi::c_void) {
    guard(what, (), || {
        if !ptr.is_null() {
            // SAFETY: the caller's promise.
            drop(unsafe { Arc::from_raw(ptr.cast::<T>()) });
        }
    })
}

/// A filter configuration: defines its stats and builds gatehouse's
/// engine from it.
///
/// # Safety
/// Envoy's to call, with the configuration it is building.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    publish("filter configuration", config, |bytes| {
        let settings = FilterSettings::parse(bytes).map_err(|e| e.to_string())?;
        // SAFETY: this `config_new` call's own configuration pointer.
        let stats = unsafe { CheckStats::define(envoy) };
        FilterConfig::new(&settings, stats)
    })
}

/// The configuration is gone: drops this reference (streams hold theirs).
///
/// # Safety
/// Envoy's to call, once, with what the matching `_new` returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: FilterConfigModulePtr,
) {
    // SAFETY: Envoy passes what `config_new` returned, once.
    unsafe { release::<FilterConfig>("filter configuration destroy", config) }
}

/// A route's settings (`context_extensions`).
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> PerRouteConfigModulePtr {
    publish("route configuration", config, |bytes| {
        RouteSettings::parse(bytes).map_err(|e| e.to_string())
    })
}

/// A route's settings are gone.
///
/// # Safety
/// Envoy's to call, once, with what the matching `_new` returned.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    config: PerRouteConfigModulePtr,
) {
    // SAFETY: Envoy passes what `per_route_config_new` returned, once.
    unsafe { release::<RouteSettings>("route configuration destroy", config) }
}

// -------------------------------------------------------------- filter ----

/// A new stream: its state, holding a reference to the configuration.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: FilterConfigModulePtr,
    _envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard("filter new", std::ptr::null(), || {
        let config = config as *const FilterConfig;
        // SAFETY: `config` came from `Arc::into_raw` in `config_new` and
        // Envoy keeps it until `config_destroy`, after this call: one more
        // strong reference may be taken.
        let config = unsafe {
            Arc::increment_strong_count(config);
            Arc::from_raw(config)
        };
        Box::into_raw(Box::new(StreamFilter::new(config))) as FilterModulePtr
    })
}

/// The request's headers are in: the check.
///
/// # Safety
/// Envoy's to call, with this stream's pointers, on its worker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    // SAFETY: this hook's own pointers (see `Stream::new`, `stream_filter`).
    let (stream, filter) = unsafe { (Stream::new(envoy), stream_filter(module)) };
    let failed = || {
        // Fail closed: the request does not go on.
        stream.send_response(
            500,
            &[
                ("cache-control", "no-cache, no-store".into()),
                ("content-type", "application/json".into()),
            ],
            br#"{"error":"internal_error","error_description":"the check failed"}"#,
            "gatehouse_check_failed",
        );
        HEADERS_STOP_ITERATION
    };
    match caught("the check", || filter.on_request_headers(&stream)) {
        Ok(Next::Continue) => HEADERS_CONTINUE,
        Ok(Next::Stop) => HEADERS_STOP_ITERATION,
        Ok(Next::Wait) => HEADERS_STOP_ALL_AND_WATERMARK,
        Err(line) => {
            envoy::log(LogLevel::Error, line.as_bytes());
            failed()
        }
    }
}

/// A waiting check has its answer: applied on the stream's worker.
///
/// # Safety
/// Envoy's to call, with this stream's pointers, on its worker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _event: u64,
) {
    // SAFETY: this hook's own pointers.
    let (stream, filter) = unsafe { (Stream::new(envoy), stream_filter(module)) };
    let ok = guard("the scheduled check", false, || {
        filter.on_scheduled(&stream);
        true
    });
    if !ok {
        stream.send_response(
            500,
            &[("cache-control", "no-cache, no-store".into())],
            b"",
            "gatehouse_check_failed",
        );
    }
}

/// The response's headers: adds the allow's client headers, if any.
///
/// # Safety
/// Envoy's to call, with this stream's pointers, on its worker.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _end_of_stream: bool,
) -> HeadersStatus {
    // SAFETY: this hook's own pointers.
    let (stream, filter) = unsafe { (Stream::new(envoy), stream_filter(module)) };
    guard("response headers", (), || {
        filter.on_response_headers(&stream)
    });
    HEADERS_CONTINUE
}

/// The stream is gone: frees its state (and stops a waiting check).
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: FilterModulePtr) {
    guard("filter destroy", (), || {
        if !module.is_null() {
            // SAFETY: made by `Box::into_raw` in `filter_new`, freed once.
            drop(unsafe { Box::from_raw(module as *mut StreamFilter) });
        }
    })
}

// ------------------------------------- hooks Envoy requires, unused here ----

/// Body data passes (a waiting check holds it through the headers' status).
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: bool,
) -> BodyStatus {
    BODY_CONTINUE
}

/// Trailers pass.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
) -> TrailersStatus {
    TRAILERS_CONTINUE
}

/// Response body passes.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: bool,
) -> BodyStatus {
    BODY_CONTINUE
}

/// Response trailers pass.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
) -> TrailersStatus {
    TRAILERS_CONTINUE
}

/// Nothing to do at the end of a stream (its state goes in `destroy`).
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
) {
}

/// No HTTP callouts are made.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: u64,
    _: CalloutResult,
    _: *mut EnvoyHttpHeader,
    _: usize,
    _: *mut EnvoyBuffer,
    _: usize,
) {
}

/// No HTTP streams are opened.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: u64,
    _: *mut EnvoyHttpHeader,
    _: usize,
    _: bool,
) {
}

/// No HTTP streams are opened.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: u64,
    _: *const EnvoyBuffer,
    _: usize,
    _: bool,
) {
}

/// No HTTP streams are opened.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: u64,
    _: *mut EnvoyHttpHeader,
    _: usize,
) {
}

/// No HTTP streams are opened.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: u64,
) {
}

/// No HTTP streams are opened.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
    _: u64,
    _: StreamResetReason,
) {
}

/// Flow control is Envoy's.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
) {
}

/// Flow control is Envoy's.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: FilterEnvoyPtr,
    _: FilterModulePtr,
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_and_named() {
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let caught_str = caught("the check", || -> u32 { panic!("boom") });
        let caught_string = caught("the check", || -> u32 {
            panic!("{}", String::from("bang"))
        });
        std::panic::set_hook(quiet);
        assert_eq!(
            caught_str,
            Err("gatehouse: panic in the check: boom".to_string())
        );
        assert_eq!(
            caught_string,
            Err("gatehouse: panic in the check: bang".to_string())
        );
        assert_eq!(caught("the check", || 7), Ok(7));
    }
}
