//! Users' encryption keys through the built binary, on SQLite (always) and
//! PostgreSQL (when `PATHFINDER_TEST_POSTGRES_URL` is set): 200 provisioned users
//! get keys; rotations killed with SIGKILL at random moments and re-run; the data
//! keys never change; a wrong master key changes nothing; moved and tampered keys
//! fail to open; deprovisioning shreds the key; and no output of any keys command
//! contains key material. Also the test vector of docs/key-format.md.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use common::{Backend, Env, pathfinder};
use serde_json::Value as Json;

use pathfinder_db::security::crypto::{self, DataKey, Keyring, MasterKey};
use pathfinder_db::security::keys::read_master_key_file;

const USERS: usize = 200;

/// Every output of every command a test ran, to be searched for key material.
#[derive(Default)]
struct Transcript {
    outputs: Vec<u8>,
}

impl Transcript {
    fn record(&mut self, out: &Output) {
        self.outputs.extend_from_slice(&out.stdout);
        self.outputs.push(b'\n');
        self.outputs.extend_from_slice(&out.stderr);
        self.outputs.push(b'\n');
    }

    /// Runs a command to its end and records what it printed.
    fn run(&mut self, cmd: &mut std::process::Command) -> Output {
        let out = cmd.output().expect("command runs");
        self.record(&out);
        out
    }

    /// Asserts that none of `secrets` appears raw, in base64 or in hex.
    fn assert_free_of(&self, secrets: &[Vec<u8>], also: &[u8]) {
        // One pass over the output per haystack: every form is at least 32
        // bytes, so a set of 8-byte prefixes finds the candidates.
        let forms: Vec<Vec<u8>> = secrets.iter().flat_map(|s| secret_forms(s)).collect();
        let prefixes: std::collections::HashSet<&[u8]> = forms.iter().map(|f| &f[..8]).collect();
        for haystack in [&self.outputs[..], also] {
            for at in 0..haystack.len().saturating_sub(7) {
                if !prefixes.contains(&haystack[at..at + 8]) {
                    continue;
                }
                for form in &forms {
                    assert!(
                        !haystack[at..].starts_with(form),
                        "key material ({} bytes, as {:?}...) found in the output",
                        form.len(),
                        String::from_utf8_lossy(&form[..6])
                    );
                }
            }
        }
    }
}

fn secret_forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex_lower: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_vec(),
        STANDARD.encode(secret).into_bytes(),
        STANDARD_NO_PAD.encode(secret).into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(secret)
            .into_bytes(),
        hex_lower.to_uppercase().into_bytes(),
        hex_lower.into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} / {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// A master key made by `keys new-master-key`, as the library reads it, with
/// its raw bytes (for the search of outputs).
struct KeyFile {
    path: PathBuf,
    key: MasterKey,
    raw: Vec<u8>,
}

fn new_key_file(t: &mut Transcript, dir: &Path, name: &str) -> KeyFile {
    let path = dir.join(name);
    let out = t.run(pathfinder(dir).args(["keys", "new-master-key", "--out", name]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = read_master_key_file(&path).expect("the new key file reads back");
    assert_eq!(
        text(&out.stdout).trim(),
        key.id().as_str(),
        "prints the id, and only it"
    );
    let raw = STANDARD
        .decode(std::fs::read_to_string(&path).unwrap().trim())
        .unwrap();
    KeyFile { path, key, raw }
}

fn system_exec(env: &Env, sql: &str) {
    match &env.backend {
        Backend::Sqlite => rusqlite::Connection::open(env.main_file())
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
        Backend::Postgres(_) => env.pg().batch_execute(sql).unwrap(),
    }
}

fn user_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn add_user(env: &Env, i: usize, name: &str) {
    system_exec(
        env,
        &format!(
            "INSERT INTO pf_users (id, username, email, password_hash) VALUES ('{}', '{name}', '{name}@example.com', 'x')",
            user_id(i)
        ),
    );
}

/// One key row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    user_id: String,
    key_encrypted: String,
    key_salt: String,
    master_key_id: String,
    rotation_count: String,
    last_rotated: String,
}

/// `pf_encryption_keys`, by user id.
fn stored_keys(env: &Env) -> BTreeMap<String, Stored> {
    env.system_rows(
        "SELECT user_id, key_encrypted, key_salt, master_key_id, rotation_count, last_rotated \
         FROM pf_encryption_keys ORDER BY user_id",
    )
    .into_iter()
    .map(|r| {
        (
            r[0].clone(),
            Stored {
                user_id: r[0].clone(),
                key_encrypted: r[1].clone(),
                key_salt: r[2].clone(),
                master_key_id: r[3].clone(),
                rotation_count: r[4].clone(),
                last_rotated: r[5].clone(),
            },
        )
    })
    .collect()
}

/// Every stored key opened with `keyring`: user id -> data key bytes.
fn open_all(env: &Env, keyring: &Keyring) -> BTreeMap<String, [u8; 32]> {
    stored_keys(env)
        .values()
        .map(|s| {
            let dk: DataKey = keyring
                .unwrap(&s.user_id, &s.key_encrypted, &s.key_salt)
                .unwrap_or_else(|e| panic!("key of {} does not open: {e}", s.user_id));
            (s.user_id.clone(), *dk.expose())
        })
        .collect()
}

fn keyring(keys: &[&KeyFile]) -> Keyring {
    let mut ring = Keyring::new();
    for k in keys {
        ring.add(read_master_key_file(&k.path).unwrap());
    }
    ring
}

fn count_on(env: &Env, id: &str) -> usize {
    env.system_rows(&format!(
        "SELECT COUNT(*) FROM pf_encryption_keys WHERE master_key_id = '{id}'"
    ))[0][0]
        .parse()
        .unwrap()
}

/// A small xorshift generator seeded from the clock: random enough for kill moments.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        Random(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Counts the keys on `id` while a rotation runs, through the test's own connection.
enum Poller {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Poller {
    fn new(env: &Env) -> Poller {
        match &env.backend {
            Backend::Sqlite => Poller::Sqlite(rusqlite::Connection::open(env.main_file()).unwrap()),
            Backend::Postgres(_) => Poller::Postgres(env.pg()),
        }
    }

    fn count_on(&mut self, id: &str) -> usize {
        let sql = "SELECT COUNT(*) FROM pf_encryption_keys WHERE master_key_id = $1";
        match self {
            Poller::Sqlite(c) => c
                .query_row(&sql.replace("$1", "?1"), [id], |r| r.get::<_, i64>(0))
                .unwrap_or(0) as usize,
            Poller::Postgres(c) => c.query_one(sql, &[&id]).unwrap().get::<_, i64>(0) as usize,
        }
    }
}

/// The whole life of a fleet's keys; the same body on both backends.
fn fleet(env: &Env) {
    let dir = env.path();
    let mut t = Transcript::default();
    let k1 = new_key_file(&mut t, dir, "k1.key");
    let k2 = new_key_file(&mut t, dir, "k2.key");
    let k3 = new_key_file(&mut t, dir, "k3.key");
    let stranger = new_key_file(&mut t, dir, "stranger.key");
    let with = |k: &KeyFile| {
        let mut cmd = env.cmd();
        cmd.arg("--master-key-file").arg(&k.path);
        cmd
    };

    // 200 users, created by the application, then provisioned with keys.
    let out = t.run(env.cmd().arg("init"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut sql = String::from("BEGIN;\n");
    let mut names = String::new();
    for i in 0..USERS {
        sql.push_str(&format!(
            "INSERT INTO pf_users (id, username, email, password_hash) VALUES ('{}', 'user{i:03}', 'user{i:03}@example.com', 'x');\n",
            user_id(i)
        ));
        names.push_str(&format!("user{i:03}\n"));
    }
    sql.push_str("COMMIT;");
    system_exec(env, &sql);
    std::fs::write(dir.join("users.txt"), names).unwrap();
    let out = t.run(with(&k1).args(["provision", "--from-file", "users.txt", "--jobs", "4"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = stored_keys(env);
    assert_eq!(before.len(), USERS, "one key per provisioned user");
    assert!(
        before
            .values()
            .all(|s| s.master_key_id == k1.key.id().as_str()
                && s.rotation_count == "0"
                && s.last_rotated.is_empty()
                && s.key_encrypted.starts_with("pathfinder:v1:")
                && s.key_encrypted.len() <= 500
                && s.key_salt.len() <= 100)
    );
    let data_keys = open_all(env, &keyring(&[&k1]));
    let distinct: std::collections::BTreeSet<_> = data_keys.values().collect();
    assert_eq!(distinct.len(), USERS, "every user has a key of their own");

    let out = t.run(with(&k1).args(["keys", "status", "--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = json(&out);
    assert_eq!(status["keys"], USERS);
    assert_eq!(
        status["by_master_key"][0]["master_key_id"],
        k1.key.id().as_str()
    );
    assert_eq!(status["by_algorithm"][0]["algorithm"], "AES-256-GCM");
    assert_eq!(status["without_key"]["count"], 0);
    assert_eq!(status["configured_master_key_id"], k1.key.id().as_str());

    // A wrong current master key: exit 1, not one row changed.
    let out = t.run(with(&stranger).args([
        "keys",
        "rotate",
        "--new-master-key-file",
        k2.path.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("wrong master key"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        stored_keys(env),
        before,
        "a wrong master key changes nothing"
    );
    // No current master key at all, with keys to rotate: exit 2, says what to set.
    let out = t.run(env.cmd().args([
        "keys",
        "rotate",
        "--new-master-key-file",
        k2.path.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("PATHFINDER_MASTER_KEY"));
    assert_eq!(stored_keys(env), before);

    // Rotations killed at random moments; each time every key opens with the
    // old or the new master key, and holds the same data key.
    let both = keyring(&[&k1, &k2]);
    let mut random = Random::new();
    let mut killed_midway = 0;
    for attempt in 0..3 {
        let done = count_on(env, k2.key.id().as_str());
        if done >= USERS - 1 {
            break;
        }
        // The first kill lands at the first re-wrapped key, so that a loaded
        // machine, where a poll may come late, still sees one land midway.
        let target = if attempt == 0 {
            done + 1
        } else {
            done + 1 + random.below(USERS - done - 1)
        };
        let mut child = env
            .std_cmd()
            .arg("--master-key-file")
            .arg(&k1.path)
            .args([
                "keys",
                "rotate",
                "--batch-size",
                "1",
                "--new-master-key-file",
            ])
            .arg(&k2.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotation");
        let mut poller = Poller::new(env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while poller.count_on(k2.key.id().as_str()) < target
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().ok(); // SIGKILL
        let out = child.wait_with_output().unwrap();
        t.record(&out);
        let now = count_on(env, k2.key.id().as_str());
        if now < USERS {
            killed_midway += 1;
        }
        assert_eq!(
            open_all(env, &both),
            data_keys,
            "after a kill, keys still open to the same bytes"
        );
        let out = t.run(with(&k1).args([
            "keys",
            "verify",
            "--all",
            "--json",
            "--new-master-key-file",
            k2.path.to_str().unwrap(),
        ]));
        assert!(out.status.success(), "{}", text(&out.stdout));
        assert_eq!(json(&out)["checked"], USERS);
    }
    assert!(
        killed_midway > 0,
        "at least one kill landed in the middle of a rotation"
    );

    // The rest, by two rotations at once: each row is re-wrapped exactly once.
    let rotation = || {
        env.std_cmd()
            .arg("--master-key-file")
            .arg(&k1.path)
            .args([
                "--json",
                "keys",
                "rotate",
                "--batch-size",
                "7",
                "--jobs",
                "2",
                "--new-master-key-file",
            ])
            .arg(&k2.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (rotation(), rotation());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        t.record(&out);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let after = stored_keys(env);
    assert!(
        after
            .values()
            .all(|s| s.master_key_id == k2.key.id().as_str()
                && s.rotation_count == "1"
                && !s.last_rotated.is_empty())
    );
    for (id, s) in &after {
        assert_ne!(
            s.key_salt, before[id].key_salt,
            "a new salt for every re-wrap"
        );
    }
    assert_eq!(
        open_all(env, &keyring(&[&k2])),
        data_keys,
        "the data keys did not change"
    );
    let out = t.run(with(&k2).args(["keys", "verify", "--all"]));
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = t.run(with(&k2).args(["keys", "status", "--json"]));
    let status = json(&out);
    assert_eq!(
        status["by_master_key"].as_array().unwrap().len(),
        1,
        "the old master key wraps nothing: it can be retired"
    );
    assert_eq!(status["by_master_key"][0]["keys"], USERS);
    assert_eq!(status["never_rotated"], 0);
    assert!(
        status["oldest_last_rotated"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "ISO 8601 UTC"
    );
    let audited: usize = env.system_rows(
        "SELECT COUNT(*) FROM pf_audit_log WHERE action = 'key.rotate' AND response_status = 200",
    )[0][0]
        .parse()
        .unwrap();
    assert!(
        audited >= USERS / 7,
        "an audit row per batch, got {audited}"
    );

    // Rotating again, to the key already in use or with it as both: no-ops.
    for current in [&k1, &k2] {
        let out = t.run(with(current).args([
            "keys",
            "rotate",
            "--new-master-key-file",
            k2.path.to_str().unwrap(),
        ]));
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("nothing to rotate"));
        assert_eq!(stored_keys(env), after);
    }

    // A wrapped key moved to another user's row, a tampered byte, a tampered salt.
    let moved = &after[&user_id(0)];
    system_exec(
        env,
        &format!(
            "UPDATE pf_encryption_keys SET key_encrypted = '{}', key_salt = '{}' WHERE user_id = '{}'",
            moved.key_encrypted,
            moved.key_salt,
            user_id(1)
        ),
    );
    let mut tampered = after[&user_id(2)].key_encrypted.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    system_exec(
        env,
        &format!(
            "UPDATE pf_encryption_keys SET key_encrypted = '{}' WHERE user_id = '{}'",
            String::from_utf8(tampered).unwrap(),
            user_id(2)
        ),
    );
    let mut salt = STANDARD.decode(&after[&user_id(3)].key_salt).unwrap();
    salt[0] ^= 1;
    system_exec(
        env,
        &format!(
            "UPDATE pf_encryption_keys SET key_salt = '{}' WHERE user_id = '{}'",
            STANDARD.encode(salt),
            user_id(3)
        ),
    );
    let out = t.run(with(&k2).args(["keys", "verify", "--all", "--json"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json(&out);
    let failed: Vec<&str> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["username"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["user001", "user002", "user003"], "{report}");
    assert!(
        report["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not open")
    );
    let stored = stored_keys(env);
    let ring = keyring(&[&k2]);
    for i in 1..=3 {
        let s = &stored[&user_id(i)];
        assert!(
            ring.unwrap(&s.user_id, &s.key_encrypted, &s.key_salt)
                .is_err()
        );
    }
    // A rotation re-wraps the others, lists the three and leaves them as they are.
    let out = t.run(with(&k2).args([
        "keys",
        "rotate",
        "--batch-size",
        "50",
        "--new-master-key-file",
        k3.path.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(count_on(env, k3.key.id().as_str()), USERS - 3);
    let rotated = stored_keys(env);
    for i in 1..=3 {
        assert_eq!(rotated[&user_id(i)], stored[&user_id(i)]);
    }
    let k3_ring = keyring(&[&k3]);
    for (id, s) in &rotated {
        if let Ok(dk) = k3_ring.unwrap(&s.user_id, &s.key_encrypted, &s.key_salt) {
            assert_eq!(dk.expose(), &data_keys[id]);
        }
    }

    // Deprovisioning shreds the key (and says so in the audit log); with
    // --archive the key stays, since the archived rows still need it.
    let out = t.run(with(&k3).args(["deprovision", "user010", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = t.run(with(&k3).args(["deprovision", "user011", "--archive", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let left = stored_keys(env);
    assert!(
        !left.contains_key(&user_id(10)),
        "deprovision deletes the key"
    );
    assert!(
        left.contains_key(&user_id(11)),
        "deprovision --archive keeps the key"
    );
    let shred =
        env.system_rows("SELECT entity_id, user_id FROM pf_audit_log WHERE action = 'key.shred'");
    assert_eq!(shred, vec![vec!["user010".to_string(), user_id(10)]]);
    // Once the archive is gone, `keys shred` deletes the kept key; a live user's never.
    let out = t.run(env.cmd().args(["keys", "shred", "user012", "--yes"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = t.run(env.cmd().args(["keys", "shred", "user011"]));
    assert_eq!(out.status.code(), Some(2), "no terminal, no --yes: refused");
    assert!(stored_keys(env).contains_key(&user_id(11)));
    let out = t.run(env.cmd().args(["keys", "shred", "user011", "--yes"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let left = stored_keys(env);
    assert!(!left.contains_key(&user_id(11)) && left.contains_key(&user_id(12)));
    assert_eq!(left.len(), USERS - 2);

    // Nothing printed, and nothing in the audit log, is key material.
    let audit: Vec<u8> = env
        .system_rows("SELECT action, entity_type, entity_id, COALESCE(user_id, ''), COALESCE(error_message, '') FROM pf_audit_log")
        .concat()
        .join("\n")
        .into_bytes();
    let mut secrets: Vec<Vec<u8>> = [&k1, &k2, &k3, &stranger]
        .iter()
        .map(|k| k.raw.clone())
        .collect();
    secrets.extend(data_keys.values().map(|k| k.to_vec()));
    t.assert_free_of(&secrets, &audit);
    assert!(
        contains(&t.outputs, k2.key.id().as_str().as_bytes()),
        "the transcript is real"
    );
}

#[test]
fn fleet_sqlite() {
    fleet(&Env::sqlite());
}

#[test]
fn fleet_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    fleet(&Env::postgres(&server, "keys"));
}

/// The test vector of docs/key-format.md: the same inputs wrap to the same
/// text, and it unwraps to the data key. The document must show these values.
#[test]
fn test_vector() {
    let master = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let salt: [u8; 32] = std::array::from_fn(|i| 0xa0 + i as u8);
    let nonce: [u8; 12] = std::array::from_fn(|i| 0xc0 + i as u8);
    let data: [u8; 32] = std::array::from_fn(|i| 0x40 + i as u8);
    let user = "8c5a4f1e-3b2d-4c6a-9e7f-0123456789ab";
    let stored = "pathfinder:v1:a6dee423c867f59a:wMHCw8TFxsfIycrLTQdURzF714MiUHImlgyciIrXEJywZOP29JmyYkKXXLJp3w2/8PrJPQKBos2WhCJb";
    let key_salt = "oKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr8=";

    assert_eq!(master.id().as_str(), "a6dee423c867f59a");
    let data_key = DataKey::from_secret(secrecy::SecretBox::new(Box::new(data)));
    let wrapped = crypto::wrap_with_salt_and_nonce(&master, user, &data_key, &salt, &nonce);
    assert_eq!(wrapped.key_encrypted, stored);
    assert_eq!(wrapped.key_salt, key_salt);
    let opened = crypto::unwrap(&master, user, stored, key_salt).unwrap();
    assert_eq!(opened.expose(), &data);
    // Bound to the user: the same text under another user id does not open.
    assert!(crypto::unwrap(&master, "someone-else", stored, key_salt).is_err());

    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/key-format.md"))
            .unwrap();
    for value in [stored, key_salt, "a6dee423c867f59a", user] {
        assert!(doc.contains(value), "docs/key-format.md shows {value}");
    }
}

#[test]
fn master_key_files() {
    let env = Env::sqlite();
    let d = env.path();
    let mut t = Transcript::default();
    let k = new_key_file(&mut t, d, "master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&k.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Never over an existing file.
    let before = std::fs::read(&k.path).unwrap();
    let out = t.run(pathfinder(d).args(["keys", "new-master-key", "--out", "master.key"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("never overwritten"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&k.path).unwrap(), before);

    let run = |t: &mut Transcript, envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = env.cmd();
        for (k, v) in envs {
            cmd.env(k, v);
        }
        t.run(cmd.args(args))
    };
    assert!(run(&mut t, &[], &["init"]).status.success());

    // Accessible to others: refused, with the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(mode)).unwrap();
            let out = run(
                &mut t,
                &[],
                &["--master-key-file", "master.key", "keys", "verify", "--all"],
            );
            assert_eq!(out.status.code(), Some(2), "mode {mode:o}");
            assert!(
                text(&out.stderr).contains("chmod 600"),
                "{}",
                text(&out.stderr)
            );
        }
        std::fs::set_permissions(&k.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Not a key: refused without echoing it.
    let out = run(
        &mut t,
        &[("PATHFINDER_MASTER_KEY", "c2VjcmV0LXNob3J0")],
        &["keys", "verify", "--all"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("PATHFINDER_MASTER_KEY"));
    assert!(!text(&out.stderr).contains("c2VjcmV0LXNob3J0"));
    // None at all: says which variable or flag to set.
    for args in [
        &["keys", "verify", "--all"][..],
        &["keys", "ensure", "--all"],
    ] {
        let out = run(&mut t, &[], args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("PATHFINDER_MASTER_KEY") && err.contains("--master-key-file"),
            "{err}"
        );
    }
    // The flag beats the environment; the environment beats the configuration file.
    let other = MasterKey::generate().unwrap();
    add_user(&env, 0, "alice");
    assert!(run(&mut t, &[], &["provision", "alice"]).status.success());
    let out = run(
        &mut t,
        &[("PATHFINDER_MASTER_KEY", &other.to_base64())],
        &[
            "--master-key-file",
            "master.key",
            "--json",
            "keys",
            "status",
        ],
    );
    assert_eq!(json(&out)["configured_master_key_id"], k.key.id().as_str());
    std::fs::write(
        d.join("pathfinder-db.toml"),
        "master_key_file = \"master.key\"\n",
    )
    .unwrap();
    let out = run(&mut t, &[], &["--json", "keys", "status"]);
    assert_eq!(json(&out)["configured_master_key_id"], k.key.id().as_str());
    let out = run(
        &mut t,
        &[("PATHFINDER_MASTER_KEY", &other.to_base64())],
        &["--json", "keys", "ensure", "alice"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&out)["master_key_id"], other.id().as_str());
    let other_raw = STANDARD.decode(other.to_base64().as_bytes()).unwrap();
    t.assert_free_of(&[k.raw.clone(), other_raw], b"");
}

/// Provisioning without a master key succeeds and says on stderr how to get
/// the key; a pf_users row created later gets its key from `keys ensure`.
#[test]
fn keys_for_users_that_came_late() {
    let env = Env::sqlite();
    let mut t = Transcript::default();
    assert!(t.run(env.cmd().arg("init")).status.success());
    add_user(&env, 1, "alice");
    let out = t.run(env.cmd().args(["provision", "alice", "bob"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("no master key") && err.contains("alice") && err.contains("keys ensure"),
        "{err}"
    );
    assert!(stored_keys(&env).is_empty(), "no master key, no key");

    let k = new_key_file(&mut t, env.path(), "k.key");
    let with = || {
        let mut cmd = env.cmd();
        cmd.arg("--master-key-file").arg(&k.path);
        cmd
    };
    let out = t.run(with().args(["keys", "status", "--json"]));
    let status = json(&out);
    assert_eq!(
        status["without_key"]["usernames"],
        serde_json::json!(["alice"])
    );
    assert_eq!(
        status["without_user_row"]["usernames"],
        serde_json::json!(["bob"])
    );

    // bob's pf_users row appears later.
    add_user(&env, 2, "bob");
    let out = t.run(with().args(["--json", "keys", "ensure", "--all"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&out)["created"], 2);
    assert_eq!(stored_keys(&env).len(), 2);
    let out = t.run(with().args(["--json", "keys", "ensure", "--all"]));
    assert_eq!(json(&out)["created"], 0, "a second run creates nothing");
    let audit = env.system_rows(
        "SELECT entity_id FROM pf_audit_log WHERE action = 'key.create' ORDER BY entity_id",
    );
    assert_eq!(
        audit,
        vec![vec!["alice".to_string()], vec!["bob".to_string()]]
    );

    // A named tenant without a pf_users row cannot get one: exit 1, says why.
    assert!(
        t.run(env.cmd().args(["provision", "carol"]))
            .status
            .success()
    );
    let out = t.run(with().args(["keys", "ensure", "carol"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("pf_users"),
        "{}",
        text(&out.stderr)
    );
    // An unknown user is a usage error.
    let out = t.run(with().args(["keys", "ensure", "nobody"]));
    assert_eq!(out.status.code(), Some(2));

    // Provisioning with a master key creates the key in the same run.
    add_user(&env, 4, "dave");
    let out = t.run(with().args(["provision", "dave"]));
    assert!(out.status.success());
    assert!(stored_keys(&env).contains_key(&user_id(4)));
    let out = t.run(with().args(["keys", "verify", "dave", "alice"]));
    assert!(out.status.success(), "{}", text(&out.stdout));

    // Nothing printed is key material: neither the master key nor a data key.
    let mut secrets = vec![k.raw.clone()];
    secrets.extend(open_all(&env, &keyring(&[&k])).values().map(|d| d.to_vec()));
    assert_eq!(secrets.len(), 4, "the master key and three data keys");
    t.assert_free_of(&secrets, b"");
}

/// The search of outputs finds key material in each form it looks for.
#[test]
fn the_output_search_finds_key_material() {
    let secret: Vec<u8> = (0u8..32).map(|b| b.wrapping_mul(37)).collect();
    for form in secret_forms(&secret) {
        let mut t = Transcript::default();
        t.outputs
            .extend_from_slice(b"error: something went wrong: ");
        t.outputs.extend_from_slice(&form);
        t.outputs.extend_from_slice(b"\n");
        let found =
            std::panic::catch_unwind(|| t.assert_free_of(std::slice::from_ref(&secret), b""));
        assert!(
            found.is_err(),
            "{:?} is found",
            String::from_utf8_lossy(&form)
        );
    }
    let clean = Transcript {
        outputs: b"nothing secret here, only a master key id a6dee423c867f59a".to_vec(),
    };
    clean.assert_free_of(&[secret], b"");
}
