//! The career summary is computed with each dialect's own date arithmetic; on
//! the same experiences SQLite and PostgreSQL must report the same four figures
//! (years within 0.01), and both must match the definition in the README:
//! summed length of all positions in days / 365.25, an open position running
//! until today, rounded to two places.

use crate::common::{self, AssertExt};

use std::collections::BTreeSet;

use common::{PgDatabase, pathfinder, pg_rows, sqlite_rows, sqlite_tenant_file, sqlite_url};
use time::Date;

/// id, company, start, end (None: open-ended).
type Position = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// Overlapping positions, positions at the same company, an open-ended one,
/// a one-day one, and dates around a leap day.
const CAREER: &[Position] = &[
    ("p1", "Acme", "2010-01-01", Some("2014-12-31")),
    ("p2", "Globex", "2013-06-01", Some("2016-03-15")), // overlaps p1
    ("p3", "Acme", "2016-04-01", Some("2019-02-28")),   // Acme again
    ("p4", "Initech", "2019-03-01", None),              // still there
    ("p5", "Freelance", "2020-01-01", Some("2020-06-30")), // overlaps p4
    ("p6", "Acme", "2012-02-28", Some("2012-03-01")),   // across a leap day
    ("p7", "Hooli", "2011-05-05", Some("2011-05-05")),  // zero days
];

/// The four figures as the database reports them.
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    positions: String,
    companies: String,
    start: String,
    years: Option<f64>,
}

impl Summary {
    fn from_row(rows: Vec<Vec<String>>) -> Summary {
        assert_eq!(rows.len(), 1, "one summary row: {rows:?}");
        let r = &rows[0];
        Summary {
            positions: r[0].clone(),
            companies: r[1].clone(),
            start: r[2].clone(),
            years: if r[3].is_empty() {
                None
            } else {
                Some(r[3].parse().expect("years is a number"))
            },
        }
    }

    /// Equal figures; years within 0.01 (the databases' "today" may differ by a day).
    fn assert_matches(&self, other: &Summary, what: &str) {
        assert_eq!(self.positions, other.positions, "{what}: total_positions");
        assert_eq!(self.companies, other.companies, "{what}: total_companies");
        assert_eq!(self.start, other.start, "{what}: career_start_date");
        match (self.years, other.years) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 0.01 + 1e-9,
                "{what}: total_years_experience {a} vs {b}"
            ),
            (a, b) => assert_eq!(a, b, "{what}: total_years_experience"),
        }
    }
}

fn date(s: &str) -> Date {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
}

/// The figures by the README's definition, computed here.
fn expected(positions: &[Position]) -> Summary {
    if positions.is_empty() {
        return Summary {
            positions: "0".into(),
            companies: "0".into(),
            start: String::new(),
            years: None,
        };
    }
    let today = time::OffsetDateTime::now_utc().date();
    let days: i64 = positions
        .iter()
        .map(|(_, _, s, e)| (e.map(date).unwrap_or(today) - date(s)).whole_days())
        .sum();
    Summary {
        positions: positions.len().to_string(),
        companies: positions
            .iter()
            .map(|p| p.1)
            .collect::<BTreeSet<_>>()
            .len()
            .to_string(),
        start: positions.iter().map(|p| p.2).min().unwrap().to_string(),
        years: Some((days as f64 / 365.25 * 100.0).round() / 100.0),
    }
}

fn inserts(key: &str, positions: &[Position]) -> String {
    positions
        .iter()
        .map(|(id, company, start, end)| {
            let end = end.map(|e| format!("'{e}'")).unwrap_or("NULL".into());
            format!(
                "INSERT INTO pf_user_{key}_experiences (id, title, company, start_date, end_date) \
                 VALUES ('{id}', 'Engineer', '{company}', '{start}', {end});\n"
            )
        })
        .collect()
}

fn summary_sql(key: &str) -> String {
    format!(
        "SELECT total_positions, total_companies, career_start_date, total_years_experience \
         FROM pf_user_{key}_career_summary"
    )
}

/// Provisions `career` (with CAREER) and `empty` (no experiences), refreshes
/// both and returns their summaries. `exec` and `rows` reach the tenant's tables.
fn run(
    dir: &std::path::Path,
    url: &str,
    exec: &dyn Fn(&str, &str),
    rows: &dyn Fn(&str, &str) -> Vec<Vec<String>>,
) -> (Summary, Summary) {
    let cmd = || {
        let mut c = pathfinder(dir);
        c.arg("--database-url").arg(url);
        c
    };
    cmd()
        .args(["provision", "career", "empty"])
        .assert()
        .success();
    exec("career", &inserts("career", CAREER));
    cmd().args(["refresh", "--all"]).assert().success();
    (
        Summary::from_row(rows("career", &summary_sql("career"))),
        Summary::from_row(rows("empty", &summary_sql("empty"))),
    )
}

fn sqlite_summaries() -> (Summary, Summary) {
    let dir = common::tempdir();
    let path = dir.path().to_path_buf();
    run(
        dir.path(),
        &sqlite_url(dir.path()),
        &|key, sql| {
            rusqlite::Connection::open(sqlite_tenant_file(&path, key))
                .unwrap()
                .execute_batch(sql)
                .unwrap()
        },
        &|key, sql| sqlite_rows(&sqlite_tenant_file(&path, key), sql),
    )
}

#[test]
fn sqlite_summary_matches_definition() {
    let (career, empty) = sqlite_summaries();
    career.assert_matches(&expected(CAREER), "SQLite vs definition");
    empty.assert_matches(&expected(&[]), "SQLite, no experiences");
}

#[test]
fn sqlite_and_postgres_summaries_agree() {
    let Some(server) = common::postgres_url() else {
        return;
    };
    let (lite_career, lite_empty) = sqlite_summaries();

    let db = PgDatabase::create(&server, "parity");
    let dir = common::tempdir();
    let (pg_career, pg_empty) = run(
        dir.path(),
        &db.url,
        &|_, sql| db.client().batch_execute(sql).unwrap(),
        &|_, sql| pg_rows(&mut db.client(), sql),
    );
    pg_career.assert_matches(&lite_career, "PostgreSQL vs SQLite");
    pg_empty.assert_matches(&lite_empty, "PostgreSQL vs SQLite, no experiences");
    pg_career.assert_matches(&expected(CAREER), "PostgreSQL vs definition");
}
