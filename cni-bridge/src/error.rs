//! The CNI spec's error result: well-known codes and the JSON printed on failure.
//! Every module error converts into [`CniError`] here, so this is the one place
//! that decides which spec code a failure carries.

use serde::Serialize;

/// Well-known error codes from the CNI spec (section "Error").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// Incompatible CNI version.
    IncompatibleVersion = 1,
    /// Unsupported field in the network configuration; the message names it.
    UnsupportedField = 2,
    /// The container is unknown or does not exist; the runtime need not clean up.
    UnknownContainer = 3,
    /// A required `CNI_*` environment variable is missing or invalid.
    InvalidEnvironment = 4,
    /// I/O failure (netlink, files, iptables).
    IoFailure = 5,
    /// Failed to decode content (stdin is not JSON).
    DecodeFailure = 6,
    /// Invalid network configuration; the message names the field.
    InvalidNetworkConfig = 7,
    /// Try again later (e.g. the address pool is exhausted).
    TryAgainLater = 11,
    /// Plugin-specific (100+): CHECK found the attachment differs from what ADD made.
    CheckMismatch = 100,
}

/// A failure as the runtime sees it: `{"cniVersion","code","msg","details"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {}: {msg}{}", *code as u32, if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The spec's error JSON, stamped with the version the runtime asked for.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_value(Wire {
            cni_version,
            code: self.code as u32,
            msg: &self.msg,
            details: &self.details,
        })
        .unwrap_or_default()
    }
}

impl From<crate::config::ConfigError> for CniError {
    fn from(e: crate::config::ConfigError) -> Self {
        use crate::config::ConfigError as E;
        let code = match &e {
            E::Decode(_) => ErrorCode::DecodeFailure,
            E::UnsupportedVersion { .. } => ErrorCode::IncompatibleVersion,
            E::Unsupported { .. } => ErrorCode::UnsupportedField,
            E::Invalid { .. } | E::Missing { .. } => ErrorCode::InvalidNetworkConfig,
            E::MissingEnv { .. } | E::InvalidEnv { .. } => ErrorCode::InvalidEnvironment,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<crate::ipam::IpamError> for CniError {
    fn from(e: crate::ipam::IpamError) -> Self {
        use crate::ipam::IpamError as E;
        let code = match &e {
            E::Exhausted { .. } => ErrorCode::TryAgainLater,
            _ => ErrorCode::IoFailure,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<crate::netlink::NetlinkError> for CniError {
    fn from(e: crate::netlink::NetlinkError) -> Self {
        use crate::netlink::NetlinkError as E;
        let code = match &e {
            E::OpenNetns { .. } => ErrorCode::InvalidEnvironment,
            E::NotABridge { .. } | E::InterfaceExists { .. } => ErrorCode::InvalidNetworkConfig,
            _ => ErrorCode::IoFailure,
        };
        CniError::new(code, e.to_string())
    }
}

impl From<crate::iptables::IptablesError> for CniError {
    fn from(e: crate::iptables::IptablesError) -> Self {
        CniError::new(ErrorCode::IoFailure, e.to_string())
    }
}
