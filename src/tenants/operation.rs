//! One tenant operation (provision, deprovision, migrate, refresh, ...): the
//! one place where the backends' differences in transactions and locks are
//! decided, and where the operation's audit row is written.
//!
//! - PostgreSQL: the registry row, the tenant's objects and the audit row
//!   change in one transaction: the operation is all or nothing. The tenant is
//!   locked with a transaction-level advisory lock (released with it).
//! - SQLite: the tenant's objects are in a file of their own; each step that
//!   touches them is one transaction on that file. Registry steps are
//!   transactions on the main file. The tenant is locked with an OS lock on a
//!   lock file, held across the steps and released when the operation ends
//!   or the process dies.
//! - Oracle: every DDL commits, so each step commits; the tenant is locked
//!   with a session-level DBMS_LOCK lock, released when the operation ends.
//!
//! - A migration on a PostgreSQL fleet: the tenant's DDL commits on its
//!   member, and the claim, the record and the audit row in one catalog
//!   transaction around it (the row lock is the claim). A kill between the
//!   two commits leaves the versions in the member's history; the next run
//!   finds them applied and records them.
//!
//! Success is audited in the same transaction as the registry change that
//! records it ([`TenantOp::complete`]); failure after a rollback, in a
//! transaction of its own ([`TenantOp::finish`]). So every completed change has
//! exactly one audit row, and every failure one too.

use std::time::Instant;

use anyhow::Context as _;

use crate::catalog::audit::{self, AuditEntry};
use crate::db::dialect::Dialect;
use crate::db::{Connection, DbError, Lock, Open, Session, Tx};
use crate::schema::tenant::TenantKey;

/// How the tenant is guarded against other commands and processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Wait for the tenant's lock.
    Wait,
    /// Give up at once when another process holds it ([`TenantOp::begin`] returns None).
    Try,
    /// The caller claims the tenant's registry row itself ([`TenantOp::claim`]):
    /// on PostgreSQL the row lock is the guard; elsewhere the tenant lock is tried.
    Claim,
}

/// A tenant operation in progress. Dropping it rolls back what is open and
/// releases the lock.
pub struct TenantOp<'s, 'db> {
    session: &'s mut Session<'db>,
    username: String,
    action: &'static str,
    command: &'static str,
    user_id: Option<String>,
    started: Instant,
    atomic: bool,
    in_tx: bool,
    /// A step on a member staged audit rows there (a grant's): copied to
    /// the catalog's log when the operation ends.
    member_staged: Option<TenantKey>,
    /// Held across commits (Oracle, SQLite): released at the end.
    held: bool,
    /// The completed operation's audit details (a JSON document), if any.
    details: Option<String>,
}

impl<'s, 'db> TenantOp<'s, 'db> {
    /// Starts `action` (e.g. `tenant.provision`, audited as run by `command`) on
    /// `username`. None when `guard` is [`Guard::Try`] and another process holds it.
    pub fn begin(
        session: &'s mut Session<'db>,
        username: &str,
        action: &'static str,
        command: &'static str,
        guard: Guard,
    ) -> Result<Option<Self>, DbError> {
        let atomic = session.atomic_tenants()?;
        // On a PostgreSQL fleet the claim need not commit on its own: the
        // row lock holds it while the member's DDL commits.
        let registry_tx =
            !atomic && guard == Guard::Claim && session.dialect() == Dialect::Postgres;
        let lock = Lock::Tenant(username);
        let sys = session.system();
        if atomic {
            sys.begin()?;
        }
        let got = match guard {
            Guard::Wait => sys.lock(&lock).map(|()| true),
            Guard::Try => sys.try_lock(&lock),
            Guard::Claim if atomic => Ok(true),
            Guard::Claim => sys.try_lock(&lock),
        };
        let got = match got {
            Ok(got) => got,
            Err(e) => {
                if atomic {
                    let _ = sys.rollback();
                }
                return Err(e);
            }
        };
        if !got {
            if atomic {
                let _ = sys.rollback();
            }
            return Ok(None);
        }
        if registry_tx && let Err(e) = sys.begin() {
            let _ = sys.unlock(&lock);
            return Err(e);
        }
        Ok(Some(TenantOp {
            session,
            username: username.to_string(),
            action,
            command,
            user_id: None,
            started: Instant::now(),
            atomic,
            // Registry steps share one catalog transaction while it is open,
            // though a member's steps commit apart (a migration on a fleet).
            in_tx: atomic || registry_tx,
            member_staged: None,
            held: !atomic,
            details: None,
        }))
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn session(&mut self) -> &mut Session<'db> {
        self.session
    }

    /// Whether registry and tenant changes share one transaction (PostgreSQL).
    pub fn atomic(&self) -> bool {
        self.atomic
    }

    /// The `pf_users.id` the audit rows name, once known.
    pub fn set_user_id(&mut self, user_id: Option<String>) {
        self.user_id = user_id;
    }

    /// Details (a JSON document) for the audit row written on completion.
    pub fn set_details(&mut self, details: String) {
        self.details = Some(details);
    }

    /// Runs `step` on the registry: inside the operation's transaction where
    /// it is atomic, else in a transaction of its own, committed at once.
    pub fn registry<T, E>(
        &mut self,
        step: impl FnOnce(&mut dyn Connection) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let sys = self.session.system();
        if self.atomic || self.in_tx {
            return step(sys);
        }
        let mut tx = Tx::begin(sys)?;
        let value = step(&mut *tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `step` on the tenant's objects: inside the operation's transaction
    /// where it is atomic, else in a transaction of its own on the tenant's
    /// connection (SQLite: the tenant file's write lock). None when the tenant
    /// has no file (SQLite, [`Open::Existing`]).
    pub fn tenant<T>(
        &mut self,
        key: &TenantKey,
        open: Open,
        step: impl FnOnce(&mut dyn Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        let catalog_tx = self.atomic || self.in_tx;
        let Some(mut conn) = self.session.tenant(key, open)? else {
            return Ok(None);
        };
        if self.atomic || (catalog_tx && conn.is_catalog()) {
            return step(&mut *conn).map(Some);
        }
        // A lost member is named in the tenant's failure.
        let member = conn.member().map(|name| format!("on member {name}"));
        let result = (|| {
            let mut tx = Tx::begin(&mut *conn)?;
            let value = step(&mut *tx)?;
            tx.commit()?;
            Ok(Some(value))
        })();
        if conn.take_staged() && result.is_ok() {
            self.member_staged = Some(key.clone());
        }
        match member {
            Some(member) => result.context(member),
            None => result,
        }
    }

    /// Like [`TenantOp::tenant`] on an existing tenant, for a step whose work
    /// is audited in the transaction that commits it (a retention batch), so
    /// a kill never leaves committed work unaudited: `audit` gives the row for
    /// what the step did (None: nothing to audit). PostgreSQL and Oracle
    /// write it beside the tenant's objects; SQLite stages it in the tenant's
    /// file and then moves it to the main one ([`audit::flush_staged`]).
    pub fn tenant_audited<T>(
        &mut self,
        key: &TenantKey,
        step: impl FnOnce(&mut dyn Connection) -> anyhow::Result<T>,
        audit: impl FnOnce(&T) -> Option<(AuditEntry, String)>,
    ) -> anyhow::Result<Option<T>> {
        if self.session.tenants_apart() {
            let Some((mut conn, sys)) = self.session.tenant_apart(key)? else {
                return Ok(None);
            };
            let mut tx = Tx::begin(&mut *conn)?;
            let value = step(&mut *tx)?;
            if let Some((entry, details)) = audit(&value) {
                audit::stage(&mut *tx, &entry, Some(&details))?;
                tx.commit()?;
                audit::flush_staged(&mut *conn, sys)?;
            } else {
                tx.commit()?;
            }
            return Ok(Some(value));
        }
        // A tenant on a server member: its work and the audit row commit
        // together on the member (in the member's stage), then the row is
        // copied to the catalog's log.
        let username = self.username.clone();
        if let Some((conn, sys)) = self.session.member_apart(key)? {
            let mut tx = Tx::begin(&mut *conn)?;
            let value = step(&mut *tx)?;
            if let Some((entry, details)) = audit(&value) {
                audit::stage(&mut *tx, &entry, Some(&details))?;
                tx.commit()?;
                conn.take_staged();
                audit::flush_member_staged(conn, sys, &username, key)?;
            } else {
                tx.commit()?;
            }
            return Ok(Some(value));
        }
        self.tenant(key, Open::Existing, |conn| {
            let value = step(conn)?;
            if let Some((entry, details)) = audit(&value) {
                audit::write_details(conn, &entry, Some(&details))?;
            }
            Ok(value)
        })
    }

    /// SQLite: moves audit rows that a killed run left staged in the tenant's
    /// file to `pf_audit_log` (elsewhere there are none).
    pub fn flush_audit(&mut self, key: &TenantKey) -> Result<(), DbError> {
        if let Some((mut conn, sys)) = self.session.tenant_apart(key)? {
            return audit::flush_staged(&mut *conn, sys);
        }
        let username = self.username.clone();
        match self.session.member_apart(key)? {
            Some((conn, sys)) => audit::flush_member_staged(conn, sys, &username, key),
            None => Ok(()),
        }
    }

    /// Makes what the operation did so far durable and goes on under the
    /// same guard, for operations that work in batches which must each commit
    /// on their own (retention sweeps: a kill loses at most the batch in
    /// flight). Where the operation is one transaction (PostgreSQL) it is
    /// committed and the next one opened (one round trip), waiting for the
    /// tenant's lock again unless the session holds it across commits
    /// ([`Connection::hold`]); elsewhere every step has committed already.
    pub fn checkpoint(&mut self) -> Result<(), DbError> {
        if !self.in_tx {
            return Ok(());
        }
        let sys = self.session.system();
        let lock = Lock::Tenant(&self.username);
        sys.commit_and_begin()?;
        if sys.holds(&lock) {
            return Ok(());
        }
        sys.lock(&lock)
    }

    /// Claims the tenant's registry row for a migration to `target` (see
    /// [`crate::catalog::registry::claim`]). None: another run holds it, or it is done.
    pub fn claim(
        &mut self,
        target: u32,
        run_id: &str,
    ) -> Result<Option<crate::catalog::registry::Claim>, DbError> {
        let (username, row_lock) = (self.username.clone(), self.atomic || self.in_tx);
        self.registry(|sys| {
            crate::catalog::registry::claim(sys, &username, target, run_id, row_lock)
        })
    }

    /// The registry step that records the change, with the success audit row
    /// in the same transaction; where the operation is atomic, it commits
    /// everything.
    pub fn complete<T>(
        &mut self,
        step: impl FnOnce(&mut dyn Connection) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let entry = self.entry(None);
        let details = self.details.take();
        let value = self.registry(|sys| -> anyhow::Result<T> {
            let value = step(sys)?;
            audit::write_details(sys, &entry, details.as_deref())?;
            Ok(value)
        })?;
        if self.in_tx {
            self.in_tx = false;
            self.session.system().commit()?;
        }
        Ok(value)
    }

    fn entry(&self, error: Option<&str>) -> AuditEntry {
        AuditEntry {
            action: self.action.to_string(),
            entity_type: "tenant".into(),
            entity_id: self.username.clone(),
            user_id: self.user_id.clone(),
            command: self.command.to_string(),
            started: self.started,
            error: error.map(str::to_string),
        }
    }

    /// Ends the operation. Success: commits what is still open. Failure:
    /// rolls back, then records it in a transaction of its own: `on_failure`
    /// (e.g. a conditional registry update) and the failure audit row.
    pub fn finish<T>(
        mut self,
        result: anyhow::Result<T>,
        on_failure: impl FnOnce(&mut dyn Connection, &str) -> Result<(), DbError>,
    ) -> anyhow::Result<T> {
        let result = match result {
            Ok(value) if self.in_tx => {
                self.in_tx = false;
                self.session
                    .system()
                    .commit()
                    .map(|()| value)
                    .map_err(anyhow::Error::from)
            }
            other => other,
        };
        if let Err(err) = &result {
            let message = crate::error::one_line(err);
            let entry = self.entry(Some(&message));
            let sys = self.session.system();
            if self.in_tx {
                self.in_tx = false;
                let _ = sys.rollback();
            }
            if !sys.is_closed() {
                let _ = (|| -> Result<(), DbError> {
                    let mut tx = Tx::begin(sys)?;
                    on_failure(&mut *tx, &message)?;
                    audit::write(&mut *tx, &entry)?;
                    tx.commit()
                })();
            }
        }
        // Rows a member step staged reach the log now that the registry
        // has committed (a failed copy waits for the tenant's next flush).
        if let Some(key) = self.member_staged.take() {
            let _ = self.flush_audit(&key);
        }
        result
    }
}

impl Drop for TenantOp<'_, '_> {
    fn drop(&mut self) {
        let sys = self.session.system();
        if self.in_tx {
            let _ = sys.rollback();
        }
        if self.held {
            let _ = sys.unlock(&Lock::Tenant(&self.username));
        }
    }
}

/// The error for a tenant whose objects are not where the registry says
/// (SQLite: its file is gone), with the ways forward. A tenant still at
/// version 0 never had them: its provisioning failed before the file was
/// made (its member unreachable, say), and provisioning again finishes it.
pub fn missing_tenant(session: &mut Session<'_>, key: &TenantKey, username: &str) -> anyhow::Error {
    if let Ok(Some(t)) = crate::catalog::registry::get(session.system(), username)
        && t.schema_version == 0
    {
        return anyhow::anyhow!(
            "tenant {username} has no tables yet: its provisioning did not finish: run `pathfinder-db provision {username}` again, or remove it with `pathfinder-db deprovision {username} --yes`"
        );
    }
    // On the member that holds it, not the catalog's folder.
    let place = session
        .tenant_file(key)
        .ok()
        .flatten()
        .map(|f| format!(" (expected at {})", f.display()))
        .unwrap_or_default();
    anyhow::anyhow!(
        "the database file of tenant {username} is missing{place}: restore it from a backup, or remove the tenant with `pathfinder-db deprovision {username} --yes`"
    )
}

/// Runs `work` on the objects of an active tenant as one audited operation
/// (`refresh`, `analyze`): waits for the tenant's lock, checks under it that
/// the tenant is still active (it may have been deprovisioned meanwhile), and
/// reports a missing SQLite file as such.
pub fn on_active_tenant<T>(
    session: &mut Session<'_>,
    tenant: &crate::catalog::registry::TenantRecord,
    action: &'static str,
    command: &'static str,
    work: impl FnOnce(&mut dyn Connection, &TenantKey) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use crate::catalog::registry::{self, Status};
    let name = tenant.username.as_str();
    let Some(mut op) = TenantOp::begin(session, name, action, command, Guard::Wait)? else {
        anyhow::bail!("tenant {name} is locked by another process");
    };
    op.set_user_id(tenant.user_id.clone());
    let result = (|| -> anyhow::Result<T> {
        let status = op
            .registry(|sys| registry::get(sys, name))?
            .map(|r| r.status);
        if status != Some(Status::Active) {
            anyhow::bail!(
                "tenant {name} is {}, not active: nothing to {command}",
                status.map(|s| s.to_string()).unwrap_or("gone".into())
            );
        }
        let key = TenantKey::parse(&tenant.tenant_key, op.session().dialect())?;
        let value = op
            .tenant(&key, Open::Existing, |conn| work(conn, &key))?
            .ok_or_else(|| missing_tenant(op.session(), &key, name))?;
        op.complete(|_| Ok(()))?;
        Ok(value)
    })();
    op.finish(result, |_, _| Ok(()))
}
