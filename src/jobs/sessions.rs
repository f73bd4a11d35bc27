//! `sessions purge`: deletes expired `pf_user_sessions` rows in batches.
//! Sessions hold refresh tokens (credentials), so they are never archived.

use std::time::Instant;

use serde::Serialize;

use crate::catalog::audit::{self, AuditEntry};
use crate::db::{Session, Tx};
use crate::jobs::archive::{self, Action, Sweep};
use crate::jobs::policy::SESSIONS;

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
/// transaction, oldest first. Each batch is audited in its own transaction
/// (`deleted`: its rows; `run_deleted`: the run's so far; the last row has
/// `"last": true`), so a killed purge leaves no deleted row unaudited; a
/// purge that finds nothing writes one row saying so.
pub fn purge(session: &mut Session<'_>, batch_size: u64, dry_run: bool) -> anyhow::Result<Purge> {
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
        expired_before: crate::catalog::registry::iso_utc(&now),
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
        let started = Instant::now();
        let mut tx = Tx::begin(sys)?;
        let (batch, more) = archive::sweep_batch(&mut *tx, &sweep, batch_size, &now)?;
        out.deleted += batch.deleted;
        if batch.selected > 0 {
            out.batches += 1;
        }
        let last = !more;
        if batch.deleted > 0 || (last && out.deleted == 0) {
            let mut entry = AuditEntry::new("sessions.purge", "table", SESSIONS, "sessions purge");
            entry.started = started;
            let details = serde_json::json!({
                "table": SESSIONS,
                "deleted": batch.deleted,
                "run_deleted": out.deleted,
                "batches": out.batches,
                "last": last,
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
