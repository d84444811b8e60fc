//! The part of Envoy's dynamic-module C ABI this filter uses, declared by
//! hand from `source/extensions/dynamic_modules/abi/abi.h` at ABI
//! `v0.2.0` (Envoy 1.40.0; the revision read and how each declaration was
//! checked against the 1.40.0 binary are in `../ABI.md`).
//!
//! Binding: the module is linked with `-z now` (`build.rs`), so an Envoy
//! that lacks one of the callbacks below refuses the module when it loads
//! it ("undefined symbol: envoy_dynamic_module_callback_…"), instead of the
//! process ending at the first call. A callback whose signature changed
//! under the same name cannot be detected: hence one build per Envoy
//! release, named in the README.
//!
//! Layout (x86-64 and aarch64 System V): the C enums are `int`-sized
//! (`u32` here), `bool` is one byte, and the two-word buffer structs are
//! passed by value in two registers, as the C declarations do. The event
//! hooks Envoy calls are exported from `hooks.rs`.

#![allow(dead_code)]

use std::ffi::c_void;

/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION`: Envoy 1.40.0 logs "Dynamic module
/// ABI version v0.2.0 matched." for it (another value is only logged).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`.
pub type FilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`.
pub type FilterConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_per_route_config_module_ptr`.
pub type PerRouteConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`.
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`.
pub type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr`.
pub type SchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    /// A null buffer, for Envoy to fill.
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// Borrows `bytes` for one call.
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// A null buffer: `set_header` with it removes the header.
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl ModuleHttpHeader {
    /// Borrows `key` and `value` for one call.
    pub fn of(key: &[u8], value: &[u8]) -> ModuleHttpHeader {
        ModuleHttpHeader {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    /// A null header, for Envoy to fill.
    pub const EMPTY: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type`.
pub type HeaderType = u32;
pub const REQUEST_HEADER: HeaderType = 0;
pub const RESPONSE_HEADER: HeaderType = 2;

/// `..._on_http_filter_request_headers_status` (the response one has the
/// same values).
pub type HeadersStatus = u32;
pub const HEADERS_CONTINUE: HeadersStatus = 0;
pub const HEADERS_STOP_ITERATION: HeadersStatus = 1;
/// `StopAllIterationAndWatermark`: what `ext_authz` returns while its
/// check is out (the body is buffered up to the watermark meanwhile).
pub const HEADERS_STOP_ALL_AND_WATERMARK: HeadersStatus = 4;

/// `..._on_http_filter_request_body_status` (and the response one).
pub type BodyStatus = u32;
pub const BODY_CONTINUE: BodyStatus = 0;
/// `StopIterationAndWatermark`.
pub const BODY_STOP_AND_WATERMARK: BodyStatus = 2;

/// `..._on_http_filter_request_trailers_status` (and the response one).
pub type TrailersStatus = u32;
pub const TRAILERS_CONTINUE: TrailersStatus = 0;
pub const TRAILERS_STOP_ITERATION: TrailersStatus = 1;

/// `envoy_dynamic_module_type_attribute_id` (the members used).
pub type AttributeId = u32;
pub const ATTR_SOURCE_ADDRESS: AttributeId = 24;
pub const ATTR_CONNECTION_MTLS: AttributeId = 29;
pub const ATTR_SUBJECT_PEER_CERTIFICATE: AttributeId = 33;
pub const ATTR_URI_SAN_PEER_CERTIFICATE: AttributeId = 37;
pub const ATTR_SHA256_PEER_CERTIFICATE_DIGEST: AttributeId = 38;

/// `envoy_dynamic_module_type_log_level`.
pub type LogLevel = u32;
pub const LOG_TRACE: LogLevel = 0;
pub const LOG_DEBUG: LogLevel = 1;
pub const LOG_INFO: LogLevel = 2;
pub const LOG_WARN: LogLevel = 3;
pub const LOG_ERROR: LogLevel = 4;

/// `envoy_dynamic_module_type_metrics_result`.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;

/// Enums of hooks this module ignores (`int`-sized).
pub type CalloutResult = u32;
pub type StreamResetReason = u32;

unsafe extern "C" {
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result_buffer: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// Replaces every value of `key`; a null `value` removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Appends a value of `key`.
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter_envoy_ptr: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut bool,
    ) -> bool;

    /// The route's per-route config pointer (ours), or null.
    pub fn envoy_dynamic_module_callback_get_most_specific_route_config(
        filter_envoy_ptr: FilterEnvoyPtr,
    ) -> PerRouteConfigModulePtr;

    /// Sets `ns.key = value` in the stream's dynamic metadata (`void`).
    pub fn envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
        filter_envoy_ptr: FilterEnvoyPtr,
        ns: ModuleBuffer,
        key: ModuleBuffer,
        value: ModuleBuffer,
    );

    /// Only from a hook on the stream's worker.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: FilterEnvoyPtr,
    ) -> SchedulerPtr;

    /// From any thread; a no-op once the filter is destroyed. Never after
    /// `scheduler_delete`.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );

    /// Exactly once per scheduler.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);

    /// Makes Envoy choose the route again (after headers changed).
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter_envoy_ptr: FilterEnvoyPtr);

    /// On the worker, after a hook returned a stop status.
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: FilterEnvoyPtr,
    );

    /// One log line at `level` (`source_file` and `source_line` name
    /// where it comes from; ours are in the line itself).
    pub fn envoy_dynamic_module_callback_log_v2(
        level: LogLevel,
        message: ModuleBuffer,
        source_file: ModuleBuffer,
        source_line: u32,
    );

    pub fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;

    /// Only in `config_new` (later definitions are refused, `Frozen`).
    /// `label_names` may be null when `label_names_length` is 0.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> MetricsResult;

    /// `label_values_length` must equal the definition's label count.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;

    /// As `define_counter`, for a histogram.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        filter_config_envoy_ptr: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        histogram_id_ptr: *mut usize,
    ) -> MetricsResult;

    /// As `increment_counter`, recording one value.
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter_envoy_ptr: FilterEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;
}
