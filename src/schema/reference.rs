//! The reference catalogs shipped with pathfinder-db (`data/reference/`),
//! loaded by `init --with-reference-data`. Idempotent: rows whose name is
//! already present are left alone.

use serde::{Deserialize, Serialize};

use crate::db::{Connection, Value};

const SKILLS: &str = include_str!("../../data/reference/skills_catalog.json");
const CAREER_PATHS: &str = include_str!("../../data/reference/career_paths.json");

#[derive(Debug, Deserialize)]
struct Skill {
    skill_name: String,
    category: String,
    description: String,
    market_demand_score: i64,
    related_skills: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct CareerPath {
    path_name: String,
    industry: String,
    from_role: String,
    to_role: String,
    typical_years: f64,
    required_skills: Vec<String>,
    description: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Loaded {
    pub skills: usize,
    pub career_paths: usize,
}

fn existing(
    conn: &mut dyn Connection,
    sql: &str,
) -> anyhow::Result<std::collections::HashSet<String>> {
    Ok(conn
        .query(sql, &[])?
        .into_iter()
        .map(|r| r[0].to_text())
        .collect())
}

/// Inserts the missing catalog rows in one transaction (with their audit
/// rows); returns how many were added.
pub fn load(conn: &mut dyn Connection) -> anyhow::Result<Loaded> {
    let skills: Vec<Skill> = serde_json::from_str(SKILLS)?;
    let paths: Vec<CareerPath> = serde_json::from_str(CAREER_PATHS)?;
    let started = std::time::Instant::now();
    let mut tx = crate::db::Tx::begin(conn)?;
    let conn = &mut *tx;
    let added = {
        let have = existing(conn, "SELECT skill_name FROM pf_ref_skills_catalog")?;
        let mut added = Loaded {
            skills: 0,
            career_paths: 0,
        };
        for s in skills.iter().filter(|s| !have.contains(&s.skill_name)) {
            conn.execute(
                "INSERT INTO pf_ref_skills_catalog (id, skill_name, category, description, market_demand_score, related_skills) VALUES (?, ?, ?, ?, ?, ?)",
                &[
                    Value::Text(uuid::Uuid::new_v4().to_string()),
                    Value::Text(s.skill_name.clone()),
                    Value::Text(s.category.clone()),
                    Value::Text(s.description.clone()),
                    Value::Int(s.market_demand_score),
                    Value::Text(serde_json::to_string(&s.related_skills)?),
                ],
            )?;
            added.skills += 1;
        }
        let have = existing(conn, "SELECT path_name FROM pf_ref_career_paths")?;
        for p in paths.iter().filter(|p| !have.contains(&p.path_name)) {
            conn.execute(
                "INSERT INTO pf_ref_career_paths (id, path_name, industry, from_role, to_role, typical_years, required_skills, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                &[
                    Value::Text(uuid::Uuid::new_v4().to_string()),
                    Value::Text(p.path_name.clone()),
                    Value::Text(p.industry.clone()),
                    Value::Text(p.from_role.clone()),
                    Value::Text(p.to_role.clone()),
                    Value::Float(p.typical_years),
                    Value::Text(serde_json::to_string(&p.required_skills)?),
                    Value::Text(p.description.clone()),
                ],
            )?;
            added.career_paths += 1;
        }
        added
    };
    for (table, count) in [
        ("pf_ref_skills_catalog", added.skills),
        ("pf_ref_career_paths", added.career_paths),
    ] {
        if count > 0 {
            let mut entry =
                crate::catalog::audit::AuditEntry::new("reference.load", "table", table, "init");
            entry.started = started;
            crate::catalog::audit::write(conn, &entry)?;
        }
    }
    tx.commit()?;
    Ok(added)
}
