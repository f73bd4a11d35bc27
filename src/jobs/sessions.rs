//! `sessions purge`: deletes expired `pf_user_sessions` rows in batches.
//! Sessions hold refresh tokens (credentials), so they are never archived.

use std::time::Instant;

use serde::Serialize;

use crate::audit::{self, AuditEntry};
use crate::db::{Session, Tx};
use crate::jobs::archive::{self, Action, Sweep};
use crate::policy::SESSIONS;

/// What a purge did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Purge {
    /// Sessions that expired before this time (ISO 8601 UTC) were due.
    pub expired_before: String,
    /// Rows deleted; in a dry run, the rows due.
    pub deleted: u64,
    pub batches: u64,
    pub dry_run: bool,
}

/// Deletes the sessions whose `expires_at` is past, `batch_size` rows per
/// transaction, oldest first; one audit row, in the last batch's transaction.
pub fn purge(session: &mut Session<'_>, batch_size: u64, dry_run: bool) -> anyhow::Result<Purge> {
    let started = Instant::now();
    let now = archive::generation_now();
    let sweep = Sweep {
        live: SESSIONS,
        archive: None,
        age_column: "expires_at",
        cutoff: &now,
        children: &[],
        earlier: &[],
        action: Action::Delete,
    };
    let mut out = Purge {
        expired_before: crate::registry::iso_utc(&now),
        deleted: 0,
        batches: 0,
        dry_run,
    };
    let sys = session.system();
    if dry_run {
        out.deleted = archive::count_due(sys, &sweep)?;
        return Ok(out);
    }
    loop {
        let mut tx = Tx::begin(sys)?;
        let (batch, more) = archive::sweep_batch(&mut *tx, &sweep, batch_size, &now)?;
        out.deleted += batch.deleted;
        if batch.selected > 0 {
            out.batches += 1;
        }
        let last = !more;
        if last {
            let mut entry = AuditEntry::new("sessions.purge", "table", SESSIONS, "sessions purge");
            entry.started = started;
            let details = serde_json::json!({
                "table": SESSIONS,
                "deleted": out.deleted,
                "batches": out.batches,
                "expired_before": out.expired_before,
            });
            audit::write_details(&mut *tx, &entry, Some(&details.to_string()))?;
        }
        tx.commit()?;
        if last {
            return Ok(out);
        }
    }
}
