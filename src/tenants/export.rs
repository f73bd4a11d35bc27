//! One tenant's rows as a self-describing JSON Lines file.
//!
//! Line 1 is a header (`{"header": {...}}`: format, tool, tenant, version,
//! dialect, time); then one line per row (`{"table": ..., "row": {...}}`,
//! tables children first, rows by id); the last line is the manifest
//! (`{"manifest": {"tables": [{"table", "rows", "sha256"}], "rows"}}`), where
//! `sha256` is the SHA-256 of the table's row objects, each serialized as in
//! the file followed by a newline. A file without its manifest is incomplete.
//!
//! Values are kept exactly: numbers as JSON numbers, text as strings, NULL as
//! null; what JSON cannot hold is tagged: `{"$blob": base64}` for a BLOB,
//! `{"$text_bytes": base64}` for text that is not UTF-8, `{"$float": "NaN"}`.
//!
//! The file is written to a temporary file beside the target, synced, read
//! back and checked against its manifest, and only then renamed into place
//! (never over an existing file unless forced).

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::registry::{self, Status};
use crate::db::{CatalogColumn, Connection, Open, Session, Value};
use crate::error::UsageError;
use crate::schema::tenant::{TableDef, TenantKey};
use crate::tenants::operation::{Guard, TenantOp};
use crate::tenants::output_file::{self, parent_dir};

pub const FORMAT: &str = "pathfinder-db-export";
pub const FORMAT_VERSION: u32 = 1;

/// Line 1 of an export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub tool: String,
    pub username: String,
    pub tenant_key: String,
    pub schema_version: i64,
    pub dialect: String,
    pub exported_at: String,
}

impl Header {
    /// The header of an export of `username`'s tenant `tenant_key` at
    /// `schema_version`, taken at `exported_at` (ISO 8601 UTC).
    pub fn for_tenant(
        username: &str,
        tenant_key: &str,
        schema_version: i64,
        dialect: crate::db::dialect::Dialect,
        exported_at: String,
    ) -> Header {
        Header {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            tool: crate::USER_AGENT.into(),
            username: username.into(),
            tenant_key: tenant_key.into(),
            schema_version,
            dialect: dialect.name().into(),
            exported_at,
        }
    }
}

/// One table's entry in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableSummary {
    pub table: String,
    pub rows: u64,
    pub sha256: String,
}

/// The last line of an export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Manifest {
    pub tables: Vec<TableSummary>,
    pub rows: u64,
}

/// A value as it is written to an export.
pub fn encode(value: &Value) -> serde_json::Value {
    use serde_json::json;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int(i) => json!(i),
        Value::Float(f) if f.is_finite() => json!(f),
        Value::Float(f) => json!({ "$float": f.to_string() }),
        Value::Text(s) => json!(s),
        Value::Blob(b) => json!({ "$blob": b64(b) }),
        Value::TextBytes(b) => json!({ "$text_bytes": b64(b) }),
    }
}

/// The inverse of [`encode`].
pub fn decode(json: &serde_json::Value) -> anyhow::Result<Value> {
    use serde_json::Value as J;
    let b64 = |s: &J| -> anyhow::Result<Vec<u8>> {
        Ok(base64::engine::general_purpose::STANDARD
            .decode(s.as_str().context("a base64 string")?)?)
    };
    Ok(match json {
        J::Null => Value::Null,
        J::Bool(b) => Value::Int(*b as i64),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().context("a number")?),
        },
        J::String(s) => Value::Text(s.clone()),
        J::Object(o) if o.len() == 1 => match o.iter().next() {
            Some((k, v)) if k == "$blob" => Value::Blob(b64(v)?),
            Some((k, v)) if k == "$text_bytes" => Value::TextBytes(b64(v)?),
            Some((k, v)) if k == "$float" => Value::Float(
                v.as_str()
                    .context("a float as text")?
                    .parse()
                    .context("a float")?,
            ),
            _ => bail!("unknown tagged value {json}"),
        },
        other => bail!("unexpected value {other}"),
    })
}

/// Where an export goes: checked before anything changes, written to a
/// temporary file in the same folder, renamed into place when complete.
#[derive(Debug)]
pub struct ExportTarget {
    path: PathBuf,
    force: bool,
}

impl ExportTarget {
    /// Checks that `path` can be written: its folder exists and is writable,
    /// the file does not exist (unless `force`), and `needed_bytes` fit.
    pub fn check(path: &Path, force: bool, needed_bytes: u64) -> anyhow::Result<ExportTarget> {
        output_file::check(path, force, "export")?;
        let dir = parent_dir(path);
        // The surest test that the folder is writable: create (and drop) a temporary file.
        tempfile::Builder::new()
            .prefix(".pathfinder-export-")
            .tempfile_in(&dir)
            .map_err(|e| {
                UsageError::new(format!("cannot write the export {}: {e}", path.display()))
            })?;
        if let Ok(free) = fs4::available_space(&dir)
            && free < needed_bytes
        {
            return Err(UsageError::new(format!(
                "cannot write the export {}: it needs about {} MB and {} has {} MB free",
                path.display(),
                needed_bytes.div_ceil(1 << 20),
                dir.display(),
                free >> 20
            ))
            .into());
        }
        Ok(ExportTarget {
            path: path.to_path_buf(),
            force,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the export of `tables` (catalog names, children first) from
    /// `conn`, reads it back, checks it, and renames it into place. Returns
    /// the manifest. The caller has frozen the tables, so the rows cannot
    /// change meanwhile.
    pub fn write(
        &self,
        conn: &mut dyn Connection,
        header: &Header,
        tables: &[(String, String, Vec<String>)],
    ) -> anyhow::Result<Manifest> {
        let dir = parent_dir(&self.path);
        // Readable by its owner only (0600, whatever the umask): it holds a
        // user's rows. The rename below keeps the mode.
        let mut builder = tempfile::Builder::new();
        builder.prefix(".pathfinder-export-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let temp = builder
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        let mut out = BufWriter::new(temp.as_file());
        writeln!(out, "{}", serde_json::json!({ "header": header }))?;
        let mut manifest = Manifest::default();
        for (table, object, columns) in tables {
            let mut summary = TableSummary {
                table: table.clone(),
                rows: 0,
                sha256: String::new(),
            };
            let mut hasher = Sha256::new();
            let mut failure: Option<std::io::Error> = None;
            conn.query_each(
                &format!("SELECT {} FROM {object} ORDER BY id", columns.join(", ")),
                &[],
                &mut |row| {
                    let object: serde_json::Map<String, serde_json::Value> = columns
                        .iter()
                        .zip(&row)
                        .map(|(c, v)| (c.clone(), encode(v)))
                        .collect();
                    let row_text = serde_json::Value::Object(object).to_string();
                    hasher.update(row_text.as_bytes());
                    hasher.update(b"\n");
                    summary.rows += 1;
                    if let Err(e) = writeln!(
                        out,
                        "{{\"table\":{},\"row\":{row_text}}}",
                        serde_json::json!(table)
                    ) {
                        failure.get_or_insert(e);
                    }
                    Ok(())
                },
            )
            .with_context(|| format!("cannot export table {object}"))?;
            if let Some(e) = failure {
                return Err(e)
                    .with_context(|| format!("cannot write the export {}", self.path.display()));
            }
            summary.sha256 = hex(&hasher.finalize());
            manifest.rows += summary.rows;
            manifest.tables.push(summary);
        }
        writeln!(out, "{}", serde_json::json!({ "manifest": manifest }))?;
        out.flush()
            .with_context(|| format!("cannot write the export {}", self.path.display()))?;
        drop(out);
        temp.as_file()
            .sync_all()
            .with_context(|| format!("cannot write the export {}", self.path.display()))?;

        // The verified copy: read back, every count and checksum as written.
        let (_, read_back) = verify(temp.path())?;
        if read_back != manifest {
            bail!(
                "the export written to {} does not read back as written: nothing was changed",
                temp.path().display()
            );
        }
        let persisted = if self.force {
            temp.persist(&self.path).map_err(|e| e.error)
        } else {
            temp.persist_noclobber(&self.path).map_err(|e| e.error)
        };
        persisted.with_context(|| {
            format!(
                "cannot put the export in place at {} (does it exist now?)",
                self.path.display()
            )
        })?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(manifest)
    }
}

/// What an export of a tenant holds: its live `tables` (children first, as
/// [`crate::jobs::archive::live_tables`] lists them) and the archive tables
/// that exist, as (name in the file, catalog name, columns).
pub fn tenant_tables(
    conn: &mut dyn Connection,
    key: &TenantKey,
    tables: &[(&'static TableDef, Vec<CatalogColumn>)],
) -> anyhow::Result<Vec<(String, String, Vec<String>)>> {
    let catalog = conn.columns(&key.prefix())?;
    Ok(tenant_tables_in(key, tables, &catalog))
}

/// [`tenant_tables`] from the tenant's catalog read already
/// (`columns(key.prefix())`).
pub fn tenant_tables_in(
    key: &TenantKey,
    tables: &[(&'static TableDef, Vec<CatalogColumn>)],
    catalog: &[CatalogColumn],
) -> Vec<(String, String, Vec<String>)> {
    let mut exported: Vec<(String, String, Vec<String>)> = tables
        .iter()
        .map(|(d, cols)| {
            (
                d.name.to_string(),
                key.object(d.name),
                cols.iter().map(|c| c.column.clone()).collect(),
            )
        })
        .collect();
    // The user's archived rows go too: they are the user's data as well.
    for (def, _) in tables {
        let object = key.object(&format!("{}_archive", def.name));
        let cols: Vec<String> = catalog
            .iter()
            .filter(|c| c.table == object)
            .map(|c| c.column.clone())
            .collect();
        if !cols.is_empty() {
            exported.push((format!("{}_archive", def.name), object, cols));
        }
    }
    exported
}

/// Refuses, before anything is written, a tenant whose export `import` would
/// refuse: a table with columns its version does not have (drift). The file
/// would be a copy nothing can load, and after `deprovision --export` the
/// only one.
pub fn check_importable(
    username: &str,
    version: i64,
    exported: &[(String, String, Vec<String>)],
    templates_dir: Option<&Path>,
) -> anyhow::Result<()> {
    let Ok(version) = u32::try_from(version) else {
        return Ok(());
    };
    let named = exported
        .iter()
        .map(|(table, _, columns)| (table.as_str(), columns.as_slice()));
    let (table, what) = match crate::tenants::import::misfit(named, templates_dir, version)? {
        None => return Ok(()),
        Some(crate::tenants::import::Misfit::Table(table)) => {
            (table, "is not a table of".to_string())
        }
        Some(crate::tenants::import::Misfit::Columns { table, columns }) => (
            table,
            format!("has column(s) {} that are not in", columns.join(", ")),
        ),
    };
    Err(UsageError::new(format!(
        "cannot export {username}: its table {table} {what} tenant version {version}, so `import` would refuse the file: keep those values elsewhere and remove the drift (`pathfinder-db verify {username}` lists it), then export again"
    ))
    .into())
}

/// Exports an active tenant's rows (archives included) to `target` without
/// changing them: under the tenant's lock, with writers kept out of its
/// tables while they are read ([`Connection::freeze_tables`]), audited as
/// `tenant.export`. Returns the header and manifest written.
pub fn export_tenant(
    session: &mut Session<'_>,
    username: &str,
    target: &ExportTarget,
    templates_dir: Option<&Path>,
) -> anyhow::Result<(Header, Manifest)> {
    let Some(mut op) = TenantOp::begin(session, username, "tenant.export", "export", Guard::Wait)?
    else {
        bail!("tenant {username} is locked by another process");
    };
    let result = (|| -> anyhow::Result<(Header, Manifest)> {
        // Read under the lock: another command may have changed it.
        let Some(record) = op.registry(|sys| registry::get(sys, username))? else {
            return Err(UsageError::new(format!(
                "no tenant named {username}: `pathfinder-db tenants` lists them"
            ))
            .into());
        };
        op.set_user_id(record.user_id.clone());
        if record.status != Status::Active {
            return Err(UsageError::new(format!(
                "tenant {username} is {}, not active: only an active tenant's tables are known to be whole (`pathfinder-db status` says why)",
                record.status
            ))
            .into());
        }
        let dialect = op.session().dialect();
        let key = TenantKey::parse(&record.tenant_key, dialect)?;
        let header = Header::for_tenant(
            username,
            key.as_str(),
            record.schema_version,
            dialect,
            registry::iso_utc(&crate::jobs::archive::generation_now()),
        );
        let manifest = op
            .tenant(&key, Open::Existing, |conn| {
                let tables = crate::jobs::archive::live_tables(conn, &key)?;
                if tables.is_empty() {
                    bail!("tenant {username} has no tables: `pathfinder-db verify {username}` lists what is missing");
                }
                let exported = tenant_tables(conn, &key, &tables)?;
                check_importable(username, record.schema_version, &exported, templates_dir)?;
                let live: Vec<String> = tables.iter().map(|(d, _)| key.object(d.name)).collect();
                conn.freeze_tables(&live)?;
                let written = target.write(conn, &header, &exported);
                // Writable again whatever happened (Oracle: the freeze outlives the transaction).
                let thawed = conn.thaw_tables(&live);
                let manifest = written?;
                thawed?;
                Ok(manifest)
            })?
            .ok_or_else(|| crate::tenants::operation::missing_tenant(op.session(), &key, username))?;
        op.complete(|_| Ok(()))?;
        Ok((header, manifest))
    })();
    op.finish(result, |_, _| Ok(()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an export and checks every table's row count and checksum against
/// its manifest. Returns the header and the manifest.
pub fn verify(path: &Path) -> anyhow::Result<(Header, Manifest)> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the export {}", path.display()))?;
    let mut header: Option<Header> = None;
    let mut manifest: Option<Manifest> = None;
    let mut seen: BTreeMap<String, (u64, Sha256)> = BTreeMap::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read the export {}", path.display()))?;
        let bad = |what: &str| anyhow::anyhow!("{}: line {}: {what}", path.display(), n + 1);
        if manifest.is_some() {
            // Blank lines after it (an editor's, `echo >>`) are no text.
            if line.trim().is_empty() {
                continue;
            }
            return Err(bad("text after the manifest"));
        }
        let doc: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(&format!("not JSON: {e}")))?;
        if n == 0 {
            let h: Header = serde_json::from_value(doc["header"].clone())
                .map_err(|_| bad("not a pathfinder-db export (no header)"))?;
            if h.format != FORMAT || h.format_version != FORMAT_VERSION {
                return Err(bad("not a pathfinder-db export of a known format version"));
            }
            header = Some(h);
        } else if let Some(m) = doc.get("manifest") {
            manifest = Some(serde_json::from_value(m.clone()).map_err(|_| bad("bad manifest"))?);
        } else {
            let table = doc["table"].as_str().ok_or_else(|| bad("no table"))?;
            let row = doc.get("row").ok_or_else(|| bad("no row"))?;
            let entry = seen
                .entry(table.to_string())
                .or_insert_with(|| (0, Sha256::new()));
            entry.0 += 1;
            entry.1.update(row.to_string().as_bytes());
            entry.1.update(b"\n");
        }
    }
    let header = header.ok_or_else(|| anyhow::anyhow!("{} is empty", path.display()))?;
    let manifest = manifest.ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no manifest: the export is incomplete",
            path.display()
        )
    })?;
    let mut found: BTreeMap<String, (u64, String)> = seen
        .into_iter()
        .map(|(t, (n, h))| (t, (n, hex(&h.finalize()))))
        .collect();
    for t in &manifest.tables {
        let (rows, sha) = found
            .remove(&t.table)
            .unwrap_or((0, hex(&Sha256::new().finalize())));
        if rows != t.rows || sha != t.sha256 {
            bail!(
                "{}: table {} has {rows} rows with checksum {sha}, the manifest says {} rows with {}: the file was changed or damaged",
                path.display(),
                t.table,
                t.rows,
                t.sha256
            );
        }
    }
    if let Some(extra) = found.keys().next() {
        bail!(
            "{}: rows of table {extra} are not in the manifest: the file was changed",
            path.display()
        );
    }
    Ok((header, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for v in [
            Value::Null,
            Value::Int(-42),
            Value::Float(0.1),
            Value::Float(12.5),
            Value::Float(f64::NAN),
            Value::Text("ünïcode \u{1F600} \"quoted\"\n".into()),
            Value::Blob(vec![0, 159, 146, 150]),
            Value::TextBytes(vec![b'a', 0xff, b'b']),
        ] {
            let back = decode(&encode(&v)).unwrap();
            match (&v, &back) {
                (Value::Float(a), Value::Float(b)) if a.is_nan() => assert!(b.is_nan()),
                _ => assert_eq!(back, v),
            }
        }
        // Text that looks like a tag stays text.
        let tricky = Value::Text("{\"$blob\":\"AAAA\"}".into());
        assert_eq!(decode(&encode(&tricky)).unwrap(), tricky);
    }
}
