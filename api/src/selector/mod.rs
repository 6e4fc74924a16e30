//! Label and field selectors, parsed from the `labelSelector` and
//! `fieldSelector` query parameters as upstream parses them. Entry points:
//! [`label::parse`] and [`field::FieldSelector::parse`].

pub mod field;
pub mod label;

pub use field::{FieldSelector, FieldSelectorError};
pub use label::{LabelSelector, LabelSelectorError};
