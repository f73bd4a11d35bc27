//! Keys and privileges: envelope encryption of users' data keys, their
//! rotation, and the grants that keep the application role to least privilege.

pub mod crypto;
pub mod grants;
pub mod keys;
