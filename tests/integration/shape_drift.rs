//! `verify` and `adopt` compare the whole shape of a tenant, not only the
//! names: a battery of hand-made mismatches (each one change to the
//! rendered schema), on SQLite and on the real PostgreSQL. Each is named by
//! `verify` (exit 1) on a registered tenant whose tables were replaced by
//! the changed ones, and refused by `adopt`, with or without `--repair`
//! (repair only creates missing tenant-named indexes and the career
//! summary). A tenant exactly as rendered verifies clean.

use crate::common;

use common::Env;
use pathfinder_db::db::dialect::Dialect;

/// One mismatch: what to replace in the rendered schema (with `{p}` for the
/// tenant prefix) and the drift line that names it.
struct Case {
    what: &'static str,
    from: String,
    to: String,
    /// The drift line (a prefix of it where the dialect's type follows).
    names: &'static str,
}

fn cases(d: Dialect) -> Vec<Case> {
    let case = |what, from: String, to: &str, names| Case {
        what,
        from,
        to: to.to_string(),
        names,
    };
    vec![
        case(
            "wrong type",
            format!("years_of_experience {}", d.decimal(3, 1)),
            "years_of_experience INTEGER",
            "skills.years_of_experience: type INTEGER, expected NUMERIC",
        ),
        case(
            "missing NOT NULL",
            format!("skill_name {} NOT NULL", d.varchar(100)),
            &format!("skill_name {}", d.varchar(100)),
            "skills.skill_name: nullable, expected NOT NULL",
        ),
        case(
            "missing primary key",
            ",\n    CONSTRAINT {p}qsum_pk PRIMARY KEY (id)".into(),
            "",
            "quick_summary: no primary key, expected (id)",
        ),
        case(
            "missing foreign key",
            ",\n    CONSTRAINT {p}skl_exp_fk FOREIGN KEY (experience_id) REFERENCES {p}experiences (id) ON DELETE CASCADE".into(),
            "",
            "skills: missing foreign key (experience_id) -> experiences ON DELETE CASCADE",
        ),
        case(
            "foreign key without ON DELETE CASCADE",
            "REFERENCES {p}chat_conversations (id) ON DELETE CASCADE".into(),
            "REFERENCES {p}chat_conversations (id)",
            "chat_messages: foreign key (conversation_id) -> chat_conversations ON DELETE NO ACTION, expected chat_conversations ON DELETE CASCADE",
        ),
        case(
            "missing check",
            " CONSTRAINT {p}skl_primary_ck CHECK (is_primary IN (0, 1))".into(),
            "",
            "skills: missing check on (is_primary)",
        ),
        case(
            "index columns in another order",
            "ON {p}chat_messages (conversation_id, created_at)".into(),
            "ON {p}chat_messages (created_at, conversation_id)",
            "index msg_conv_ix on chat_messages: columns (created_at, conversation_id), expected (conversation_id, created_at)",
        ),
        case(
            "missing unique key",
            ",\n    CONSTRAINT {p}ana_date_type_uq UNIQUE (metric_date, metric_type)".into(),
            "",
            "career_analytics: missing unique key (metric_date, metric_type)",
        ),
        case(
            "wrong default",
            "DEFAULT 'draft'".into(),
            "DEFAULT 'final'",
            "pert_responses.status: default 'final', expected 'draft'",
        ),
    ]
}

/// The rendered schema of `user` with the case's change (which must apply).
fn changed_schema(env: &Env, user: &str, case: &Case) -> String {
    let p = format!("pf_user_{user}_");
    let ddl = env.ok(&["render", user, "--dialect", env.dialect()]);
    let from = case.from.replace("{p}", &p);
    assert!(ddl.contains(&from), "{}: {from:?} not in\n{ddl}", case.what);
    ddl.replacen(&from, &case.to.replace("{p}", &p), 1)
}

/// Drops every object the rendered schema creates (the history stays).
fn drop_rendered(env: &Env, user: &str) {
    let p = format!("pf_user_{user}_");
    let children_first = [
        "chat_messages",
        "chat_conversations",
        "skills",
        "pert_responses",
        "experiences",
        "profile_summary",
        "quick_summary",
        "career_analytics",
        "skills_progression",
    ];
    let sql = if env.is_sqlite() {
        std::iter::once(format!("DROP TABLE {p}career_summary;"))
            .chain(children_first.iter().map(|t| format!("DROP TABLE {p}{t};")))
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        format!(
            "DROP MATERIALIZED VIEW {p}career_summary; DROP TABLE {};",
            children_first
                .iter()
                .map(|t| format!("{p}{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    env.tenant_exec(user, &sql);
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn battery(env: &Env) {
    let dialect: Dialect = env.dialect().parse().unwrap();
    env.ok(&["init"]);
    env.ok(&["provision", "good"]);
    let out = env.run(&["verify", "good"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // A tenant whose tables were replaced by exactly what is rendered: clean.
    env.ok(&["provision", "same"]);
    drop_rendered(env, "same");
    env.tenant_exec(
        "same",
        &env.ok(&["render", "same", "--dialect", env.dialect()]),
    );
    let out = env.run(&["verify", "same"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    for (i, case) in cases(dialect).iter().enumerate() {
        // verify: a registered tenant with the changed tables.
        let user = format!("v{i}");
        env.ok(&["provision", &user]);
        drop_rendered(env, &user);
        env.tenant_exec(&user, &changed_schema(env, &user, case));
        let out = env.run(&["verify", &user]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            case.what,
            stdout(&out)
        );
        let lines: Vec<String> = stdout(&out)
            .lines()
            .filter(|l| l.starts_with(&format!("{user} (")))
            .map(str::to_string)
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("{user} (version ")) && l.contains(case.names)),
            "{}: {lines:?}",
            case.what
        );
        // Nothing else is named: the comparison is exact.
        assert_eq!(lines.len(), 1, "{}: {lines:?}", case.what);

        // adopt: the same tables made by hand are refused, --repair or not.
        let user = format!("h{i}");
        env.system_exec(&changed_schema(env, &user, case));
        for args in [vec!["adopt", &user], vec!["adopt", &user, "--repair"]] {
            let out = env.run(&args);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}: {}",
                case.what,
                stderr(&out)
            );
            assert!(
                stderr(&out).contains(case.names),
                "{} ({args:?}): {}",
                case.what,
                stderr(&out)
            );
        }
    }
    // A table of the tenant's name that no template makes is drift, and so
    // (on SQLite) is a value-check trigger gone: the tenant then takes
    // values its version refuses.
    env.ok(&["provision", "extra"]);
    env.tenant_exec("extra", "CREATE TABLE pf_user_extra_notes (id INTEGER)");
    let mut expected = vec!["extra table notes"];
    if env.is_sqlite() {
        env.tenant_exec(
            "extra",
            "DROP TRIGGER pf_user_extra_exp_ins_tg; DROP TRIGGER pf_user_extra_exp_upd_tg",
        );
        expected.extend([
            "missing trigger exp_ins_tg on experiences",
            "missing trigger exp_upd_tg on experiences",
        ]);
    }
    for args in [vec!["verify", "extra"], vec!["verify", "--all"]] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("extra (")).collect();
        for want in &expected {
            assert!(
                lines.iter().any(|l| l.contains(want)),
                "{args:?}: {want}: {lines:?}"
            );
        }
        assert_eq!(lines.len(), expected.len(), "{args:?}: {lines:?}");
    }
    // A tenant whose name begins with this one's (`extra_b`) has tables
    // that are not `extra`'s.
    env.ok(&["provision", "extra_b"]);
    let out = env.run(&["verify", "extra"]);
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.starts_with("extra ("))
            .count(),
        expected.len(),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["verify", "extra_b"]);
    assert!(out.status.success(), "{}", stdout(&out));

    // None of the refused tenants was registered.
    let tenants = env.json(&["tenants"]);
    assert!(
        tenants["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t["username"].as_str().unwrap().starts_with('h')),
        "{tenants}"
    );
}

#[test]
fn verify_and_adopt_name_every_shape_mismatch_sqlite() {
    battery(&Env::sqlite());
}

#[test]
fn verify_and_adopt_name_every_shape_mismatch_postgres() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    battery(&Env::postgres(&server, "shape"));
}
