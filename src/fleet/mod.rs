//! The fleet: the catalog database and its members.
//!
//! The database `--database-url` names is the **catalog**: system tables,
//! tenant registry, audit log. Tenants' tables live on **members**, listed
//! in `pf_databases` (the catalog is itself the member named `catalog`, so a
//! deployment without members works as it always did). The registry records
//! each tenant's member; [`placement`] chooses it when a tenant is made.

pub mod identity;
pub mod lost;
pub mod members;
pub mod moves;
pub mod placement;
pub mod rebalance;

use std::collections::BTreeMap;

use crate::catalog::registry::TenantRecord;

/// Tenants grouped by the member holding them (the catalog's first), for
/// the commands that read each database's catalog once.
pub fn by_member(tenants: &[TenantRecord]) -> BTreeMap<(bool, &str), Vec<&TenantRecord>> {
    let mut out: BTreeMap<(bool, &str), Vec<&TenantRecord>> = BTreeMap::new();
    for t in tenants {
        let name = t.database.as_str();
        out.entry((name != members::CATALOG, name))
            .or_default()
            .push(t);
    }
    out
}
