//! The object model every ferrokube component shares: upstream's Kubernetes
//! types (re-exported from `k8s-openapi`), the table of served resources, and
//! pure helpers (selectors, name validation, patches, quantities). No I/O lives here.

pub use k8s_openapi;

pub mod patch;
pub mod quantity;
pub mod remotecommand;
pub mod resources;
pub mod selector;
pub mod spdy;
pub mod validation;

pub use resources::{GroupVersion, ResourceInfo, RESOURCES};
