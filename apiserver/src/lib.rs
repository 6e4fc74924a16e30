//! kube-apiserver: the Kubernetes REST API that kubectl uses and the gRPC API
//! the components use, over one registry stored in etcd-lite.

pub mod config;
pub mod discovery;
pub mod error;
pub mod openapi;
pub mod table;
