//! One tenant's lifecycle: the operation frame every tenant change runs in,
//! provisioning and deprovisioning, adoption, export and import, sizes and
//! fingerprints.

pub mod adopt;
pub mod export;
pub mod fingerprint;
pub mod import;
pub mod operation;
pub mod provision;
pub mod stats;
