//! Secrets in connection strings and the erasure of deleted keys, through the
//! built binary on SQLite and PostgreSQL:
//! - an option the drivers do not know is named, never shown with its value
//!   (a misspelled `passwrod=` is still a password), in URLs and key=value
//!   strings, on stdout, stderr, JSON and audit rows;
//! - a deprovisioned user's wrapped key and the wraps a rotation replaced are
//!   gone from the database's files (SQLite: main file and write-ahead log;
//!   PostgreSQL: the table's file, read raw after a CHECKPOINT);
//! - the key-format document's promises: accepted master key forms, `keys
//!   status` per format version, a master_key_id column that disagrees with
//!   the stored text.

use crate::common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE};
use common::{Backend, Env, pathfinder};
use pathfinder_db::security::crypto::MasterKey;
use secrecy::SecretBox;

const SECRET: &str = "S3cretPW";

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// 8. Unknown options are named, never echoed with their values.

/// Runs a few commands (text and JSON) with `url`: each must fail with a
/// usage error that names `option` (when given) and never shows the secret.
fn refused_without_echo(dir: &Path, url: &str, option: Option<&str>) {
    for args in [
        vec!["tenants"],
        vec!["--json", "status"],
        vec!["init"],
        vec!["--json", "doctor"],
    ] {
        let out = pathfinder(dir)
            .arg("--database-url")
            .arg(url)
            .args(&args)
            .output()
            .unwrap();
        let all = text(&out);
        assert!(
            !all.contains(SECRET),
            "{url} {args:?} showed the value: {all}"
        );
        if args[..] != ["--json", "doctor"] {
            assert_eq!(out.status.code(), Some(2), "{url} {args:?}: {all}");
        }
        if let Some(option) = option {
            assert!(
                all.contains(&format!("`{option}`")),
                "{url} {args:?} does not name {option}: {all}"
            );
        }
    }
    // The same URL from the configuration file.
    std::fs::write(
        dir.join("pathfinder-db.toml"),
        format!("database_url = {url:?}\n"),
    )
    .unwrap();
    let out = pathfinder(dir).arg("tenants").output().unwrap();
    std::fs::remove_file(dir.join("pathfinder-db.toml")).unwrap();
    assert_eq!(out.status.code(), Some(2), "{url} from the file");
    assert!(!text(&out).contains(SECRET), "{url}: {}", text(&out));
}

#[test]
fn unknown_url_options_are_named_not_echoed_sqlite() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let main = env.main_file().display().to_string();
    for (url, option) in [
        (
            format!("sqlite://{main}?passwrod={SECRET}"),
            Some("passwrod"),
        ),
        (
            format!("sqlite://{main}?password_file={SECRET}"),
            Some("password_file"),
        ),
        (format!("sqlite://{main}?{SECRET}"), None),
        (format!("sqlite:{main}?mode=ro&pwd={SECRET}"), Some("pwd")),
    ] {
        refused_without_echo(env.path(), &url, option);
    }
    // Oracle URLs are parsed before any client library is needed.
    for (url, option) in [
        (
            format!("oracle://scott@db.example.com:1521/svc?passwrod={SECRET}"),
            Some("passwrod"),
        ),
        (
            format!("oracle://scott@db:1521/svc?connect_timeout=5&wallet_pasword={SECRET}"),
            Some("wallet_pasword"),
        ),
        (format!("oracle://scott@db:1521/svc?{SECRET}"), None),
        // A password holding an `@` not written %40: its tail is no host.
        (format!("postgres://u:pa@{SECRET}@127.0.0.1:1/db"), None),
    ] {
        refused_without_echo(env.path(), &url, option);
    }
    let audit = env.system_rows(
        "SELECT COALESCE(entity_id, '') || COALESCE(error_message, '') FROM pf_audit_log",
    );
    assert!(audit.iter().all(|r| !r[0].contains(SECRET)));
}

#[test]
fn unknown_url_options_are_named_not_echoed_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let env = Env::postgres(&server, "secopts");
    env.ok(&["init"]);
    let sep = if env.url.contains('?') { '&' } else { '?' };
    let url = |tail: &str| format!("{}{sep}{tail}", env.url);
    let kv = {
        let parsed: postgres::Config = env.url.parse().unwrap();
        let host = match &parsed.get_hosts()[0] {
            postgres::config::Host::Tcp(h) => h.clone(),
            #[allow(unreachable_patterns)]
            _ => "127.0.0.1".to_string(),
        };
        format!(
            "host={host} port={} user={} dbname={}",
            parsed.get_ports().first().copied().unwrap_or(5432),
            parsed.get_user().unwrap_or("postgres"),
            parsed.get_dbname().unwrap_or("postgres")
        )
    };
    for (url, option) in [
        (
            url(&format!("password_file={SECRET}")),
            Some("password_file"),
        ),
        (url(&format!("passwrod={SECRET}")), Some("passwrod")),
        (
            url(&format!("sslmode=disable&Passwrod={SECRET}")),
            Some("passwrod"),
        ),
        (url(&format!("%70asswd={SECRET}")), Some("passwd")),
        (url(SECRET), None),
        (format!("{kv} passwrod={SECRET}"), Some("passwrod")),
        (
            format!("{kv} password_file='{SECRET} x'"),
            Some("password_file"),
        ),
        // No `=`: the driver's message would quote the next character.
        (format!("{kv} password {SECRET}"), None),
        (format!("{kv} password='{SECRET}"), None),
    ] {
        refused_without_echo(env.path(), &url, option);
    }
    // A key=value string with known options only is a PostgreSQL URL.
    let out = pathfinder(env.path())
        .args(["--database-url", &kv, "tenants"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{kv}: {}", text(&out));
    let audit = env.system_rows(
        "SELECT COALESCE(entity_id, '') || COALESCE(error_message, '') FROM pf_audit_log",
    );
    assert!(!audit.is_empty(), "init was audited");
    assert!(audit.iter().all(|r| !r[0].contains(SECRET)));
}

// ---------------------------------------------------------------------------
// 9. Deleting a key erases it.

fn add_user(env: &Env, i: usize, name: &str) {
    env.system_exec(&format!(
        "INSERT INTO pf_users (id, username, email, password_hash) \
         VALUES ('00000000-0000-4000-8000-{i:012}', '{name}', '{name}@example.com', 'x')"
    ));
}

fn new_key(env: &Env, name: &str) -> String {
    env.ok(&["keys", "new-master-key", "--out", name]);
    env.path().join(name).display().to_string()
}

/// Every 20-byte window of the payload (nonce, ciphertext and tag in base64)
/// of each wrapped key: the byte strings that must not survive.
fn windows(wraps: &[String]) -> HashSet<Vec<u8>> {
    let mut out = HashSet::new();
    for w in wraps {
        let payload = w.rsplit(':').next().unwrap().as_bytes();
        assert_eq!(payload.len(), 80, "{w}");
        for win in payload.windows(20) {
            out.insert(win.to_vec());
        }
    }
    out
}

/// Which of `wraps` have a byte string in `bytes`.
fn found_in(bytes: &[u8], wraps: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for w in wraps {
        let set = windows(std::slice::from_ref(w));
        if bytes.windows(20).any(|b| set.contains(b)) {
            found.push(w.clone());
        }
    }
    found
}

/// The raw bytes that hold `pf_encryption_keys`: SQLite's main file and its
/// write-ahead log; PostgreSQL's relation file, after a CHECKPOINT writes the
/// shared buffers out (plus the file the table had before, if still there).
fn raw_bytes(env: &Env, earlier_pg_file: Option<&str>) -> Vec<u8> {
    match &env.backend {
        Backend::Sqlite => {
            let mut bytes = std::fs::read(env.main_file()).unwrap();
            let wal = env.path().join("pathfinder.db-wal");
            if let Ok(w) = std::fs::read(&wal) {
                bytes.extend_from_slice(&w);
            }
            bytes
        }
        Backend::Postgres(_) => {
            let mut pg = env.pg();
            pg.batch_execute("CHECKPOINT").unwrap();
            let mut bytes = Vec::new();
            let mut files = vec![pg_file(env)];
            files.extend(earlier_pg_file.map(str::to_string));
            for file in files {
                // A file dropped by VACUUM FULL is gone (or empty) after the checkpoint.
                if let Ok(row) = pg.query_one("SELECT pg_read_binary_file($1)", &[&file]) {
                    bytes.extend_from_slice(&row.get::<_, Vec<u8>>(0));
                }
            }
            bytes
        }
    }
}

fn pg_file(env: &Env) -> String {
    env.system_rows("SELECT pg_relation_filepath('pf_encryption_keys')")[0][0].clone()
}

fn wraps_of(env: &Env, user: &str) -> Vec<String> {
    env.system_rows(&format!(
        "SELECT k.key_encrypted FROM pf_encryption_keys k JOIN pf_users u ON u.id = k.user_id \
         WHERE u.username = '{user}'"
    ))
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

/// A connection held open by "the application" while the tool runs: on SQLite
/// it keeps the write-ahead log from being checkpointed and removed when the
/// tool's last connection closes, as on any live system.
enum Holder {
    Sqlite(#[allow(dead_code)] rusqlite::Connection),
    Postgres(#[allow(dead_code)] postgres::Client),
}

fn holder(env: &Env) -> Holder {
    match &env.backend {
        Backend::Sqlite => Holder::Sqlite(rusqlite::Connection::open(env.main_file()).unwrap()),
        Backend::Postgres(_) => Holder::Postgres(env.pg()),
    }
}

/// Runs `args`, a command that deletes or re-wraps keys. On PostgreSQL its
/// erasure must wait for every transaction on the server that began before the
/// deletion; on a shared test server other databases' long transactions can
/// outlast that wait: the command then says so and names `keys erase`, which
/// is run until they ended. Returns what the command printed on stdout.
fn run_erasing(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    if !out.status.success() {
        assert!(
            !env.is_sqlite() && text(&out).contains("opened before the deletion"),
            "{args:?}: {}",
            text(&out)
        );
        erase_until_done(env);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn erase_until_done(env: &Env) {
    let started = std::time::Instant::now();
    loop {
        let out = env.run(&["keys", "erase"]);
        if out.status.success() {
            return;
        }
        assert!(
            text(&out).contains("opened before the deletion")
                && started.elapsed() < std::time::Duration::from_secs(600),
            "{}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn shredding_erases(env: &Env) {
    env.ok(&["init"]);
    let k1 = new_key(env, "k1.key");
    let k2 = new_key(env, "k2.key");
    let k3 = new_key(env, "k3.key");
    let names = ["alice", "bob", "carol", "dave"];
    for (i, name) in names.iter().enumerate() {
        add_user(env, i + 1, name);
    }
    let mut args = vec!["--master-key-file", &k1, "provision"];
    args.extend(names);
    env.ok(&args);
    let _app = holder(env);
    let first_file = (!env.is_sqlite()).then(|| pg_file(env));

    // Two rotations: every wrap they replace must be gone from the files.
    let mut old: Vec<String> = names.iter().flat_map(|n| wraps_of(env, n)).collect();
    run_erasing(
        env,
        &[
            "--master-key-file",
            &k1,
            "keys",
            "rotate",
            "--new-master-key-file",
            &k2,
        ],
    );
    old.extend(names.iter().flat_map(|n| wraps_of(env, n)));
    run_erasing(
        env,
        &[
            "--master-key-file",
            &k2,
            "keys",
            "rotate",
            "--new-master-key-file",
            &k3,
        ],
    );
    let current: Vec<String> = names.iter().flat_map(|n| wraps_of(env, n)).collect();
    assert_eq!(old.len(), 8);
    assert!(old.iter().all(|w| !current.contains(w)));
    let bytes = raw_bytes(env, first_file.as_deref());
    assert_eq!(
        found_in(&bytes, &current).len(),
        4,
        "the search finds the live wraps"
    );
    let left = found_in(&bytes, &old);
    assert!(
        left.is_empty(),
        "{}: {} replaced wrap(s) still in the files after rotation",
        env.dialect(),
        left.len()
    );

    // Deprovisioning shreds alice's key: no byte string of it survives.
    let alice = wraps_of(env, "alice");
    assert_eq!(alice.len(), 1);
    let before = (!env.is_sqlite()).then(|| pg_file(env));
    let out = run_erasing(env, &["--json", "deprovision", "alice", "--yes"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["tenants"][0]["keys_shredded"], 1, "{doc}");
    assert!(wraps_of(env, "alice").is_empty());
    let bytes = raw_bytes(env, before.as_deref());
    assert!(
        found_in(&bytes, &alice).is_empty(),
        "{}: the shredded key is still in the files",
        env.dialect()
    );
    assert_eq!(found_in(&bytes, &current).len(), 3, "the others are kept");

    // `keys shred` after `deprovision --archive` erases too.
    let bob = wraps_of(env, "bob");
    env.ok(&["deprovision", "bob", "--archive", "--yes"]);
    assert_eq!(wraps_of(env, "bob"), bob, "--archive keeps the key");
    let before = (!env.is_sqlite()).then(|| pg_file(env));
    run_erasing(env, &["keys", "shred", "bob", "--yes"]);
    let bytes = raw_bytes(env, before.as_deref());
    assert!(found_in(&bytes, &bob).is_empty(), "{}", env.dialect());

    // Each erasure is audited, saying what was done.
    let erased = env
        .system_rows("SELECT COALESCE(details, '') FROM pf_audit_log WHERE action = 'key.erase'");
    assert_eq!(erased.len(), 4, "two rotations, a deprovision, a shred");
    let what = if env.is_sqlite() {
        "secure_delete"
    } else {
        "VACUUM FULL"
    };
    assert!(erased.iter().all(|r| r[0].contains(what)), "{erased:?}");
    erasure_later(env, erased.len(), &k3);
    if !env.is_sqlite() {
        snapshot_delays_erasure(env);
    }
}

/// `deprovision --erase-later` shreds the key (the row is gone, audited) but
/// leaves the erasure, and on PostgreSQL the rewrite of the whole key table
/// it costs, to a later `keys erase`, which then erases it.
fn erasure_later(env: &Env, erasures_before: usize, master_key: &str) {
    let erasures = || {
        env.system_rows(
            "SELECT COUNT(*) FROM pf_audit_log WHERE action = 'key.erase' AND entity_type <> 'forged'",
        )[0][0]
            .parse::<usize>()
            .unwrap()
    };
    let dave = wraps_of(env, "dave");
    assert_eq!(dave.len(), 1);
    let before = (!env.is_sqlite()).then(|| pg_file(env));
    // Erasure rows the tool did not write (the application may write audit
    // rows of its user, at any time it likes) hide nothing.
    for (id, user) in [
        ("f0f0f0f0-0001", "'00000000-0000-4000-8000-000000000001'"),
        ("f0f0f0f0-0002", "NULL"),
    ] {
        env.system_exec(&format!(
            "INSERT INTO pf_audit_log (id, user_id, action, entity_type, entity_id, created_at, details) \
             VALUES ('{id}', {user}, 'key.erase', 'forged', 'pf_encryption_keys', '2099-01-01 00:00:00', \
             '{{\"erased\": \"VACUUM FULL\", \"covers\": \"2099-01-01 00:00:00\"}}')"
        ));
    }
    let out = env.run(&["--json", "deprovision", "dave", "--yes", "--erase-later"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["tenants"][0]["keys_shredded"], 1, "{doc}");
    assert_eq!(doc["erase"], "later", "{doc}");
    assert!(wraps_of(env, "dave").is_empty(), "the shred committed");
    assert_eq!(erasures(), erasures_before, "no erasure ran");
    if let Some(before) = &before {
        assert_eq!(&pg_file(env), before, "the key table was not rewritten");
    }
    // `keys shred --erase-later` likewise, and a person is told what is
    // left to do.
    add_user(env, 5, "erin");
    env.ok(&["--master-key-file", master_key, "provision", "erin"]);
    env.ok(&["deprovision", "erin", "--archive", "--yes"]);
    assert_eq!(wraps_of(env, "erin").len(), 1, "--archive keeps the key");
    let out = env.run(&["keys", "shred", "erin", "--yes", "--erase-later"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("until `pathfinder-db keys erase` runs"),
        "{}",
        text(&out)
    );
    assert!(wraps_of(env, "erin").is_empty());
    assert_eq!(erasures(), erasures_before, "no erasure ran");

    // doctor says the erasure waits, and fails once it waited a day.
    let check = env.doctor_check("key erasure");
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("(2 audit row(s)"),
        "{check}"
    );
    env.system_exec(if env.is_sqlite() {
        "UPDATE pf_audit_log SET created_at = datetime(created_at, '-2 days')"
    } else {
        "UPDATE pf_audit_log SET created_at = created_at - INTERVAL '2 days'"
    });
    if !env.is_sqlite() {
        // What the erasures covered moves back with them (SQLite's is a rowid).
        env.system_exec(
            "UPDATE pf_audit_log SET details = json_build_object('erased', details::json->'erased', \
             'covers', to_char((details::json->>'covers')::timestamp - INTERVAL '2 days', \
             'YYYY-MM-DD HH24:MI:SS.US'))::text WHERE action = 'key.erase'",
        );
    }
    let check = env.doctor_check("key erasure");
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["fix"].as_str().unwrap().contains("keys erase"),
        "{check}"
    );

    // The nightly form erases when something waits...
    run_erasing(env, &["keys", "erase", "--if-needed"]);
    assert_eq!(erasures(), erasures_before + 1);
    // ...and does nothing (no rewrite, no audit row) when nothing does.
    let erased_file = (!env.is_sqlite()).then(|| pg_file(env));
    let (_, doc) = env.json_run(&["keys", "erase", "--if-needed"]);
    assert_eq!(doc["needed"], false, "{doc}");
    assert_eq!(erasures(), erasures_before + 1);
    if let Some(erased_file) = &erased_file {
        assert_eq!(
            &pg_file(env),
            erased_file,
            "the key table was not rewritten"
        );
    }
    let check = env.doctor_check("key erasure");
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("no deleted"),
        "{check}"
    );

    // What an erasure covers is where the audit log ended when it began
    // (`covers`), not where its own row lands: a key deleted while it ran
    // (here: the newest shred, made to look so) still waits.
    let last_erase = if env.is_sqlite() {
        "rowid = (SELECT MAX(rowid) FROM pf_audit_log WHERE action = 'key.erase' AND entity_type <> 'forged')"
    } else {
        "created_at = (SELECT MAX(created_at) FROM pf_audit_log WHERE action = 'key.erase' AND entity_type <> 'forged')"
    };
    env.system_exec(&if env.is_sqlite() {
        format!(
            "UPDATE pf_audit_log SET details = json_object('erased', 'x', 'covers', \
             (SELECT MAX(rowid) - 1 FROM pf_audit_log WHERE action = 'key.shred')) WHERE {last_erase}"
        )
    } else {
        format!(
            "UPDATE pf_audit_log SET details = json_build_object('erased', 'x', 'covers', \
             (SELECT to_char(MAX(created_at) - INTERVAL '1 microsecond', 'YYYY-MM-DD HH24:MI:SS.US') \
             FROM pf_audit_log WHERE action = 'key.shred'))::text WHERE {last_erase}"
        )
    });
    let check = env.doctor_check("key erasure");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("(1 audit row(s)"),
        "{check}"
    );
    // An erasure row from before `covers` counts from its own position.
    env.system_exec(&format!(
        "UPDATE pf_audit_log SET details = '{{\"erased\": \"x\"}}' WHERE {last_erase}"
    ));
    let check = env.doctor_check("key erasure");
    assert!(
        check["detail"].as_str().unwrap().contains("no deleted"),
        "{check}"
    );
    let bytes = raw_bytes(env, before.as_deref());
    assert!(
        found_in(&bytes, &dave).is_empty(),
        "{}: erased by keys erase",
        env.dialect()
    );
}

/// PostgreSQL keeps a deleted row while a snapshot from before the delete
/// may see it: the erasure then says so (exit 1, naming the session) instead
/// of claiming success, and `keys erase` finishes it once the session ended.
fn snapshot_delays_erasure(env: &Env) {
    let carol = wraps_of(env, "carol");
    let mut reader = env.pg();
    let mut tx = reader
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    // A snapshot, but no lock on the key table (that would time VACUUM FULL
    // out instead, with the same way forward).
    let seen = tx.query("SELECT username FROM pf_tenants", &[]).unwrap();
    assert!(!seen.is_empty());
    let before = pg_file(env);
    let out = env.run(&["deprovision", "carol", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("keys erase") && text(&out).contains("opened before the deletion"),
        "{}",
        text(&out)
    );
    assert!(
        wraps_of(env, "carol").is_empty(),
        "the shred itself committed"
    );
    assert!(
        !found_in(&raw_bytes(env, Some(&before)), &carol).is_empty(),
        "still in the file while the snapshot lives (the message was honest)"
    );
    tx.commit().unwrap();
    let before = pg_file(env);
    erase_until_done(env);
    assert!(found_in(&raw_bytes(env, Some(&before)), &carol).is_empty());
}

#[test]
fn shredding_and_rotation_erase_sqlite() {
    shredding_erases(&Env::sqlite());
}

#[test]
fn shredding_and_rotation_erase_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    shredding_erases(&Env::postgres(&server, "secerase"));
}

/// `deprovision --export` keeps the user's key (the file's encrypted fields
/// need it); an import of that file that fails, or is cancelled, takes back
/// only what the import made: the key stays.
fn a_failed_import_keeps_the_exported_users_key(env: &Env) {
    env.ok(&["init"]);
    let k1 = new_key(env, "k1.key");
    add_user(env, 7, "erin");
    env.ok(&["--master-key-file", &k1, "provision", "erin"]);
    // A value this version refuses, put in past its check by hand: the
    // export holds it, and loading it back fails.
    let bad = if env.is_sqlite() {
        "DROP TRIGGER pf_user_erin_exp_ins_tg; \
         INSERT INTO pf_user_erin_experiences (id, title, company, start_date) \
         VALUES ('e1', 'T', 'C', '2021-02-30')"
    } else {
        "ALTER TABLE pf_user_erin_skills DROP CONSTRAINT pf_user_erin_skl_primary_ck; \
         INSERT INTO pf_user_erin_skills (id, skill_name, is_primary) VALUES ('s1', 'rust', 5)"
    };
    env.tenant_exec("erin", bad);
    let file = env.path().join("erin.jsonl");
    env.ok(&[
        "deprovision",
        "erin",
        "--yes",
        "--export",
        file.to_str().unwrap(),
    ]);
    let key = wraps_of(env, "erin");
    assert_eq!(key.len(), 1, "--export keeps the key");
    let out = env.run(&["--master-key-file", &k1, "import", file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing was kept"), "{}", text(&out));
    assert_eq!(wraps_of(env, "erin"), key, "the failed import kept the key");
    if env.is_sqlite() {
        // Taken back as the import's undoing (one transaction elsewhere).
        let undone = env.system_rows(
            "SELECT COUNT(*) FROM pf_audit_log WHERE action = 'tenant.import_cancel' AND entity_id = 'erin'",
        );
        assert_eq!(undone[0][0], "1");
    }
    let status = env.system_rows("SELECT status FROM pf_tenants WHERE username = 'erin'");
    assert_eq!(status, vec![vec!["deprovisioned".to_string()]]);
}

/// The application may rename its users: after bob is renamed and eve
/// takes his name, deprovisioning bob's tenant shreds bob's key only, never
/// eve's (she is active, her fields need it).
fn deprovision_shreds_only_its_users_key(env: &Env) {
    env.ok(&["init"]);
    let k1 = new_key(env, "k1.key");
    add_user(env, 21, "bob");
    add_user(env, 22, "eve");
    env.ok(&["--master-key-file", &k1, "provision", "bob", "eve"]);
    let eve = wraps_of(env, "eve");
    assert_eq!(eve.len(), 1);
    env.system_exec("UPDATE pf_users SET username = 'bobby' WHERE username = 'bob'");
    env.system_exec("UPDATE pf_users SET username = 'bob' WHERE username = 'eve'");
    env.ok(&["deprovision", "bob", "--yes"]);
    let left = env.system_rows(
        "SELECT k.key_encrypted FROM pf_encryption_keys k \
         WHERE k.user_id = '00000000-0000-4000-8000-000000000022'",
    );
    assert_eq!(left, vec![eve.clone()], "eve's key stays");
    let bobs = env.system_rows(
        "SELECT COUNT(*) FROM pf_encryption_keys WHERE user_id = '00000000-0000-4000-8000-000000000021'",
    );
    assert_eq!(bobs[0][0], "0", "bob's key is shredded");
    // A live user whose key row is gone (a restore that lost it) fails
    // `keys verify --all`, which would otherwise check only the rows there.
    env.ok(&["--master-key-file", &k1, "keys", "verify", "--all"]);
    env.system_exec(
        "DELETE FROM pf_encryption_keys WHERE user_id = '00000000-0000-4000-8000-000000000022'",
    );
    let out = env.run(&["--master-key-file", &k1, "keys", "verify", "--all"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("eve") && text(&out).contains("restore that row from a backup"),
        "{}",
        text(&out)
    );
}

#[test]
fn deprovision_shreds_only_its_users_key_sqlite() {
    deprovision_shreds_only_its_users_key(&Env::sqlite());
}

#[test]
fn deprovision_shreds_only_its_users_key_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    deprovision_shreds_only_its_users_key(&Env::postgres(&server, "secrename"));
}

/// An export holds rows, not keys: imported where the user's key is, it
/// is kept (no word); where it is not (a new site that copied pf_users
/// only), a new key is made and the import says so.
#[test]
fn an_import_that_makes_a_new_key_says_so() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let k1 = new_key(&env, "k1.key");
    add_user(&env, 31, "zoe");
    env.ok(&["--master-key-file", &k1, "provision", "zoe"]);
    let file = env.path().join("zoe.jsonl");
    env.ok(&[
        "deprovision",
        "zoe",
        "--yes",
        "--export",
        file.to_str().unwrap(),
    ]);
    let back = env.run(&["--master-key-file", &k1, "import", file.to_str().unwrap()]);
    assert!(back.status.success(), "{}", text(&back));
    assert!(
        !text(&back).contains("note:"),
        "the key was here: {}",
        text(&back)
    );

    let site = Env::sqlite();
    site.ok(&["init"]);
    std::fs::copy(&k1, site.path().join("k1.key")).unwrap();
    add_user(&site, 31, "zoe");
    let out = site.run(&[
        "--master-key-file",
        &k1,
        "--quiet",
        "import",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("zoe had no encryption key here"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_failed_import_keeps_the_exported_users_key_sqlite() {
    a_failed_import_keeps_the_exported_users_key(&Env::sqlite());
}

#[test]
fn a_failed_import_keeps_the_exported_users_key_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    a_failed_import_keeps_the_exported_users_key(&Env::postgres(&server, "secimport"));
}

// ---------------------------------------------------------------------------
// 10. What docs/key-format.md promises.

/// The forms of master key text the document says are accepted, and some it
/// says are refused, through PATHFINDER_MASTER_KEY and a key file.
#[test]
fn master_key_forms() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    // 0xfb bytes give '+' and '/' in base64, so the URL-safe form differs.
    let raw = [0xfbu8; 32];
    let id = MasterKey::from_secret(SecretBox::new(Box::new(raw)))
        .id()
        .to_string();
    let padded = STANDARD.encode(raw);
    let unpadded = STANDARD_NO_PAD.encode(raw);
    assert!(padded.contains('+') && padded.contains('/') && padded.ends_with('='));
    let status = |key: Option<&str>, file: Option<&str>| {
        let mut cmd = env.cmd();
        if let Some(k) = key {
            cmd.env("PATHFINDER_MASTER_KEY", k);
        }
        if let Some(text) = file {
            let path = env.path().join("m.key");
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
            cmd.arg("--master-key-file").arg(&path);
        }
        cmd.args(["--json", "keys", "status"]).output().unwrap()
    };
    for form in [
        padded.clone(),
        unpadded.clone(),
        format!("  {padded}\n"),
        format!("\t{unpadded}\r\n"),
    ] {
        let out = status(Some(&form), None);
        assert!(out.status.success(), "{form:?}: {}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["configured_master_key_id"], id.as_str(), "{form:?}");
    }
    for file in [
        format!("{padded}\n"),
        padded.clone(),
        format!("{unpadded}\r\n"),
        format!("\n{padded}\n\n"),
    ] {
        let out = status(None, Some(&file));
        assert!(out.status.success(), "{file:?}: {}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["configured_master_key_id"], id.as_str(), "{file:?}");
    }
    for bad in [
        URL_SAFE.encode(raw),
        format!("{} {}", &padded[..20], &padded[20..]),
        STANDARD.encode([0xfbu8; 31]),
        STANDARD.encode([0xfbu8; 33]),
    ] {
        let out = status(Some(&bad), None);
        assert_eq!(out.status.code(), Some(2), "{bad:?} was accepted");
    }
    let out = status(None, Some(&format!("{padded}\n{padded}\n")));
    assert_eq!(out.status.code(), Some(2), "two lines");
    assert!(text(&out).contains("more than one line"), "{}", text(&out));
}

/// `keys status` counts per format version and per master key by the stored
/// text; a master_key_id column that disagrees with the text is counted,
/// listed by `keys verify`, and stops `keys rotate` before it changes anything.
fn formats_and_mismatch(env: &Env) {
    env.ok(&["init"]);
    let k1 = new_key(env, "k1.key");
    let k2 = new_key(env, "k2.key");
    for (i, name) in ["alice", "bob"].iter().enumerate() {
        add_user(env, i + 1, name);
    }
    env.ok(&["--master-key-file", &k1, "provision", "alice", "bob"]);
    let id1 = pathfinder_db::security::keys::read_master_key_file(Path::new(&k1))
        .unwrap()
        .id()
        .to_string();
    let id2 = pathfinder_db::security::keys::read_master_key_file(Path::new(&k2))
        .unwrap()
        .id()
        .to_string();

    let status = env.json(&["keys", "status"]);
    assert_eq!(
        status["by_format"],
        serde_json::json!([{"format": "v1", "keys": 2}]),
        "{status}"
    );
    assert_eq!(status["column_mismatch"], 0);
    let shown = env.ok(&["keys", "status"]);
    assert!(shown.contains("format v1"), "{shown}");

    // The column of alice's row claims the new key: the text still names k1.
    env.system_exec(&format!(
        "UPDATE pf_encryption_keys SET master_key_id = '{id2}' \
         WHERE user_id = '00000000-0000-4000-8000-000000000001'"
    ));
    let status = env.json(&["keys", "status"]);
    assert_eq!(status["column_mismatch"], 1, "{status}");
    assert_eq!(status["by_master_key"][0]["master_key_id"], id1.as_str());
    assert_eq!(
        status["by_master_key"][0]["keys"], 2,
        "counted by the text: k1 still wraps both"
    );
    let out = env.run(&["--master-key-file", &k1, "keys", "verify", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("alice") && text(&out).contains(&format!("set the column to {id1}")),
        "{}",
        text(&out)
    );
    let before = env.system_rows("SELECT key_encrypted FROM pf_encryption_keys ORDER BY id");
    let out = env.run(&[
        "--master-key-file",
        &k1,
        "keys",
        "rotate",
        "--new-master-key-file",
        &k2,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert_eq!(
        env.system_rows("SELECT key_encrypted FROM pf_encryption_keys ORDER BY id"),
        before
    );
    // Fixed as the message says, the rotation goes through.
    env.system_exec(&format!(
        "UPDATE pf_encryption_keys SET master_key_id = '{id1}' WHERE master_key_id = '{id2}'"
    ));
    run_erasing(
        env,
        &[
            "--master-key-file",
            &k1,
            "keys",
            "rotate",
            "--new-master-key-file",
            &k2,
        ],
    );
    let status = env.json(&["keys", "status"]);
    assert_eq!(status["by_master_key"][0]["master_key_id"], id2.as_str());
    assert_eq!(status["by_master_key"][0]["keys"], 2);
}

#[test]
fn status_formats_and_column_mismatch_sqlite() {
    formats_and_mismatch(&Env::sqlite());
}

#[test]
fn status_formats_and_column_mismatch_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    formats_and_mismatch(&Env::postgres(&server, "secfmt"));
}

/// A key file given where a list of usernames or a policy is read (a
/// mistyped path, a symlink in the policies folder) is refused without its
/// text in any message.
#[test]
fn a_key_file_read_by_mistake_is_never_quoted() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let key = new_key(&env, "master.key");
    let secret = std::fs::read_to_string(&key).unwrap();
    let secret = secret.trim();
    let words: Vec<&str> = secret
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 8)
        .collect();
    assert!(!words.is_empty(), "{secret}");
    let policies = env.path().join("pol");
    std::fs::create_dir(&policies).unwrap();
    std::os::unix::fs::symlink(&key, policies.join("leak.toml")).unwrap();
    let policies = policies.to_str().unwrap().to_string();
    for args in [
        vec!["provision", "--from-file", &key],
        vec!["migrate", "--tenants-file", &key],
        vec!["policies", "apply", "--dir", &policies],
        vec!["--json", "provision", "--from-file", &key],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let all = text(&out);
        for word in &words {
            assert!(!all.contains(word), "{args:?} showed the key: {all}");
        }
    }
    // A list with a bad name says which line.
    let list = env.path().join("users.txt");
    std::fs::write(&list, "alice\n# a comment\nBob\n").unwrap();
    let out = env.run(&["provision", "--from-file", list.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("line 3"), "{}", text(&out));
}

/// A folder of tenant files must be the running user's: one made by
/// another user beforehand is refused (its owner could replace every
/// tenant file) and reported by `grants check`; a member folder open to
/// others is made private by `databases add`.
#[test]
fn tenant_folders_are_the_running_users_and_private() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::sqlite();
    env.ok(&["init"]);
    let shared = env.path().join("shared_m2");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.ok(&["databases", "add", "m2", shared.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&shared).unwrap().mode() & 0o777, 0o700);
    env.ok(&["provision", "ivy", "--database", "m2"]);
    env.ok(&["grants", "check"]);

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a folder of another user needs root to make");
        return;
    }
    let tenants = env.tenant_dir();
    std::fs::create_dir_all(&tenants).unwrap();
    std::fs::set_permissions(&tenants, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&tenants, Some(65534), Some(65534)).unwrap();
    let out = env.run(&["provision", "jo", "--database", "catalog"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("belongs to user id 65534") && text(&out).contains("chown"),
        "{}",
        text(&out)
    );
    let out = env.run(&["grants", "check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("belongs to user id 65534"),
        "{}",
        text(&out)
    );
    let out = env.run(&["grants", "apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    std::os::unix::fs::chown(&tenants, Some(0), Some(0)).unwrap();
    env.ok(&["provision", "jo", "--database", "catalog"]);
    env.ok(&["grants", "check"]);
}

/// A user deprovisioned with `--archive` leaves archives under the tenant
/// key; a new user given the same name does not get them, unless it is the
/// same user (the same pf_users id, or `--take-archives`).
fn kept_archives_go_to_no_one_else(env: &Env) {
    env.ok(&["init"]);
    add_user(env, 7, "gus");
    for user in ["erin", "fred", "gus"] {
        env.ok(&["provision", user]);
        env.tenant_exec(user, &format!(
            "INSERT INTO pf_user_{user}_experiences (id, title, company, start_date) VALUES ('e1', 'Engineer', 'Acme', '2019-03-01')"
        ));
        env.ok(&["deprovision", user, "--archive", "--yes"]);
    }
    let out = env.run(&["provision", "erin"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--tenant-key") && text(&out).contains("--take-archives"),
        "{}",
        text(&out)
    );
    // A new person: another key, and none of the old rows.
    env.ok(&["provision", "erin", "--tenant-key", "erin2"]);
    let file = env.path().join("erin.jsonl");
    env.ok(&["export", "erin", "--out", file.to_str().unwrap()]);
    let exported = std::fs::read_to_string(&file).unwrap();
    assert!(!exported.contains("Engineer"), "{exported}");
    // The same person back: the archives are theirs again.
    env.ok(&["provision", "fred", "--take-archives"]);
    let out = env.run(&[
        "retention",
        "restore",
        "fred",
        "--table",
        "experiences",
        "--archived-since",
        "1d",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        env.tenant_rows("fred", "SELECT title FROM pf_user_fred_experiences"),
        vec![vec!["Engineer".to_string()]]
    );
    // The same pf_users id: no question asked.
    env.ok(&["provision", "gus"]);
}

#[test]
fn kept_archives_go_to_no_one_else_sqlite() {
    kept_archives_go_to_no_one_else(&Env::sqlite());
    // On a fleet the same user goes back to the member holding them, though
    // another has more room.
    let env = Env::sqlite();
    env.ok(&["init"]);
    let m1 = env.path().join("m1");
    let m2 = env.path().join("m2");
    env.ok(&["databases", "add", "m1", m1.to_str().unwrap()]);
    env.ok(&["databases", "drain", "catalog"]);
    env.ok(&["provision", "hal", "ida"]);
    env.ok(&["deprovision", "hal", "--archive", "--yes"]);
    env.ok(&["databases", "add", "m2", m2.to_str().unwrap()]);
    let out = env.run(&["provision", "hal", "--take-archives", "--database", "m2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("on member m1"), "{}", text(&out));
    let doc = env.json(&["provision", "hal", "--take-archives"]);
    assert_eq!(doc["tenants"][0]["database"], "m1", "{doc}");
}

#[test]
fn kept_archives_go_to_no_one_else_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    kept_archives_go_to_no_one_else(&Env::postgres(&server, "keptarch"));
}

/// `--force` replaces a file, but never the database, a tenant's file or a
/// key file.
#[test]
fn force_never_replaces_the_tools_own_files() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    env.ok(&["provision", "ann", "bea"]);
    let key = new_key(&env, "master.key");
    let main = env.main_file();
    let bea = common::sqlite_tenant_file(env.path(), "bea");
    for target in [main.to_str().unwrap(), bea.to_str().unwrap(), &key] {
        let before = std::fs::read(target).unwrap();
        for args in [
            vec!["export", "ann", "--out", target, "--force"],
            vec!["fingerprint", "ann", "--out", target, "--force"],
            vec!["deprovision", "ann", "--export", target, "--force", "--yes"],
        ] {
            let out = env.run(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(text(&out).contains("never replaces"), "{}", text(&out));
            assert_eq!(std::fs::read(target).unwrap(), before, "{args:?}");
        }
    }
    // An earlier export is replaced.
    let file = env.path().join("ann.jsonl");
    env.ok(&["export", "ann", "--out", file.to_str().unwrap()]);
    env.ok(&["export", "ann", "--out", file.to_str().unwrap(), "--force"]);
    let fp = env.path().join("ann.fp");
    env.ok(&["fingerprint", "ann", "--out", fp.to_str().unwrap()]);
    env.ok(&[
        "fingerprint",
        "ann",
        "--out",
        fp.to_str().unwrap(),
        "--force",
    ]);
}

/// A user's pf_users row deleted (the application may delete it, and the
/// user's key goes with it) while the tenant lives on is a doctor failure.
fn account_gone_is_reported(env: &Env) {
    env.ok(&["init"]);
    add_user(env, 8, "kim");
    add_user(env, 9, "lou");
    env.ok(&["provision", "kim", "lou"]);
    let check = env.doctor_check("accounts");
    assert_eq!(check["ok"], true, "{check}");
    env.system_exec("DELETE FROM pf_users WHERE username = 'kim'");
    let check = env.doctor_check("accounts");
    assert_eq!(check["ok"], false, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("kim") && !detail.contains("lou"), "{check}");
    env.ok(&["deprovision", "kim", "--yes"]);
    let check = env.doctor_check("accounts");
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn account_gone_is_reported_sqlite() {
    account_gone_is_reported(&Env::sqlite());
}

#[test]
fn account_gone_is_reported_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    account_gone_is_reported(&Env::postgres(&server, "accountgone"));
}

/// Messages a DBA acts on: the deprovision question names the member that
/// holds the tables; an export with blank lines after its manifest imports;
/// restoring into a deprovisioned tenant names the way forward.
#[test]
fn messages_name_the_place_and_the_way_forward() {
    let env = Env::sqlite();
    env.ok(&["init"]);
    let m1 = env.path().join("m1");
    env.ok(&["databases", "add", "m1", m1.to_str().unwrap()]);
    env.ok(&["databases", "drain", "catalog"]);
    env.ok(&["provision", "uma"]);
    let out = env.run(&["deprovision", "uma"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("from member(s) m1"), "{}", text(&out));

    let file = env.path().join("uma.jsonl");
    env.ok(&["export", "uma", "--out", file.to_str().unwrap()]);
    let mut exported = std::fs::read_to_string(&file).unwrap();
    exported.push_str("\n\n");
    std::fs::write(&file, exported).unwrap();
    env.ok(&["import", file.to_str().unwrap(), "--as", "uma_copy"]);
    // A file whose user is no safe name here can still come in under another.
    let renamed = std::fs::read_to_string(&file).unwrap().replacen(
        "\"username\":\"uma\"",
        "\"username\":\"Uma.Old\"",
        1,
    );
    let odd = env.path().join("odd.jsonl");
    std::fs::write(&odd, renamed).unwrap();
    let out = env.run(&["import", odd.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--as USER"), "{}", text(&out));

    env.ok(&["deprovision", "uma", "--archive", "--yes"]);
    let out = env.run(&[
        "retention",
        "restore",
        "uma",
        "--table",
        "experiences",
        "--archived-since",
        "1d",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--take-archives"), "{}", text(&out));
}
