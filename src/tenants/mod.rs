//! One tenant's lifecycle: the operation frame every tenant change runs in,
//! provisioning and deprovisioning, adoption, export and import, and sizes.

pub mod adopt;
pub mod export;
pub mod import;
pub mod operation;
pub mod provision;
pub mod stats;
