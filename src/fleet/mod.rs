//! The fleet: the catalog database and its members.
//!
//! The database `--database-url` names is the **catalog**: system tables,
//! tenant registry, audit log. Tenants' tables live on **members**, listed
//! in `pf_databases` (the catalog is itself the member named `catalog`, so a
//! deployment without members works as it always did). The registry records
//! each tenant's member; [`placement`] chooses it when a tenant is made.

pub mod members;
pub mod placement;
