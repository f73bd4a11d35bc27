//! The fleet-wide read commands read the catalog once per database, not once
//! per tenant: `verify --all` past a few dozen tenants reads one catalog for
//! the fleet and compares each distinct shape once. What it finds must be
//! exactly what verifying each tenant on its own finds, drift and all, and
//! `doctor` and `adopt --scan` (which now read names only) must still see
//! missing and unregistered tables.

use crate::common::{Env, on_both_backends};

/// More than `verify` reads one by one (64).
const FLEET: usize = 70;

fn user(i: usize) -> String {
    format!("f{i:03}")
}

/// The drift lines of `verify` (`user (version N): problem`), sorted.
fn drift_lines(out: &std::process::Output) -> Vec<String> {
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" (version "))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

fn fleet_reads_equal_tenant_reads(env: &Env) {
    env.ok(&["init"]);
    let users: Vec<String> = (0..FLEET).map(user).collect();
    // Keys that are another's beginning up to a `_` (`fa`, `fa_chat`) split
    // names the same way whichever path reads them.
    let mut all = users.clone();
    all.extend(["fa".to_string(), "fa_chat".to_string()]);
    let file = env.path().join("users.txt");
    std::fs::write(&file, all.join("\n") + "\n").unwrap();
    env.ok(&["provision", "--from-file", file.to_str().unwrap()]);

    // Drift in a few tenants: a missing index, extra columns (in order),
    // an extra column that `fa` claims, the same drift twice.
    let p = |u: &str| format!("pf_user_{u}_");
    env.tenant_exec("f001", &format!("DROP INDEX {}exp_dates_ix", p("f001")));
    env.tenant_exec(
        "f002",
        &format!(
            "ALTER TABLE {0}experiences ADD COLUMN zz TEXT; ALTER TABLE {0}experiences ADD COLUMN aa INTEGER",
            p("f002")
        ),
    );
    for u in ["f003", "f004"] {
        env.tenant_exec(
            u,
            &format!(
                "ALTER TABLE {}skills ADD COLUMN extra TEXT DEFAULT 'x'",
                p(u)
            ),
        );
    }
    env.tenant_exec(
        "fa_chat",
        &format!(
            "ALTER TABLE {}chat_messages ADD COLUMN extra INTEGER",
            p("fa_chat")
        ),
    );

    let fleet = env.run(&["verify", "--all"]);
    assert_eq!(fleet.status.code(), Some(1));
    let fleet_lines = drift_lines(&fleet);
    assert!(
        fleet_lines
            .iter()
            .any(|l| l.starts_with("f001 (") && l.contains("missing index exp_dates_ix")),
        "{fleet_lines:?}"
    );
    assert_eq!(
        fleet_lines
            .iter()
            .filter(|l| l.contains("extra column skills.extra"))
            .count(),
        2,
        "{fleet_lines:?}"
    );
    // Each tenant on its own: the same lines.
    let mut one_by_one = Vec::new();
    for u in &all {
        one_by_one.extend(drift_lines(&env.run(&["verify", u])));
    }
    one_by_one.sort();
    assert_eq!(fleet_lines, one_by_one);
    // The extra columns of f002 keep their order.
    let out = String::from_utf8_lossy(&fleet.stdout).into_owned();
    assert!(
        out.find("experiences.zz").unwrap() < out.find("experiences.aa").unwrap(),
        "{out}"
    );

    // doctor names a tenant whose table is gone; adopt --scan finds tables
    // no registry row owns.
    let cascade = if env.is_sqlite() { "" } else { " CASCADE" };
    env.tenant_exec(
        "f005",
        &format!("DROP TABLE {}quick_summary{cascade}", p("f005")),
    );
    let doctor = env.run(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(text.contains("f005 (no quick_summary)"), "{text}");
    let sql = env.ok(&["render", "stray", "--dialect", env.dialect()]);
    env.system_exec(&sql);
    let scan = env.json(&["adopt", "--scan", "--dry-run"]);
    assert!(scan.to_string().contains("stray"), "{scan}");
}

on_both_backends!(
    fleet_reads_equal_tenant_reads,
    fleet_reads_equal_tenant_reads_sqlite,
    fleet_reads_equal_tenant_reads_postgres,
    "fleet"
);
