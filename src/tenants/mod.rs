//! One tenant's lifecycle: the operation frame every tenant change runs in,
//! provisioning and deprovisioning, adoption, export and import, sizes and
//! fingerprints.

pub mod adopt;
pub mod export;
pub mod fingerprint;
pub mod import;
pub mod operation;
pub mod output_file;
pub mod provision;
pub mod stats;

/// A tenant a read-only command could not reach (its member down, say): its
/// name and why, listed apart from what was read of the others.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantFailure {
    pub username: String,
    pub error: String,
}
