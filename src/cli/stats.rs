use crate::catalog::registry::Status;
use crate::error::PartialFailure;
use crate::tenants::stats::{self, human_bytes, parse_bytes};

use super::{Context, parse_usernames, select_tenants};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users to report on (with each table's figures)
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub users: Vec<String>,

    /// Every tenant, the largest first
    #[arg(long)]
    pub all: bool,

    /// List only the N largest tenants (the totals still count every one)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub top: Option<u64>,

    /// List the tenants over this size (bytes, or with k, M, G, T) and exit 1
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub alert_bytes: Option<u64>,

    /// List the tenants with more rows than this and exit 1
    #[arg(long, value_name = "ROWS", value_parser = clap::value_parser!(i64).range(0..))]
    pub alert_rows: Option<i64>,

    /// Count rows instead of reading the optimizer's estimates (PostgreSQL,
    /// Oracle: one more query per tenant; SQLite always counts)
    #[arg(long)]
    pub exact: bool,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let wanted = parse_usernames(ctx, &args.users)?;
    let (db, _renderer) = ctx.open_database_read_only()?;
    let mut session = db.connect_read_only()?;
    let tenants = select_tenants(ctx, session.system(), &wanted, args.all, |t| {
        t.status != Status::Deprovisioned
    })?;
    let (all, failed) = stats::collect(&mut session, &tenants, args.exact, args.all)?;
    let totals = stats::totals(&all);
    let alerts = stats::alerts(&all, args.alert_bytes, args.alert_rows);
    let shown = &all[..all.len().min(args.top.unwrap_or(u64::MAX) as usize)];
    for f in &failed {
        eprintln!("error: {}: {}", f.username, f.error);
    }
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "tenants": shown,
            "totals": totals,
            "alerts": alerts,
            "failed": failed,
        }));
    } else {
        print_table(ctx, shown, !args.all);
        ctx.say(format!(
            "{} tenant(s): {} rows, {}{}",
            totals.tenants,
            totals.rows,
            human_bytes(totals.bytes),
            if shown.len() < all.len() {
                format!(" (the {} largest listed)", shown.len())
            } else {
                String::new()
            }
        ));
        let unanalyzed: usize = all.iter().map(|s| s.unanalyzed_tables).sum();
        if all.iter().any(|s| !s.rows_exact) {
            ctx.say(format!(
                "rows marked ~ are the optimizer's estimates{}; --exact counts them",
                if unanalyzed > 0 {
                    format!(
                        ", and {unanalyzed} table(s) were never analyzed (`pathfinder-db analyze`)"
                    )
                } else {
                    String::new()
                }
            ));
        }
        for a in &alerts {
            super::out(&format!(
                "ALERT {} (key {}): {} rows, {} over the {} threshold\n",
                a.username,
                a.tenant_key,
                a.rows,
                human_bytes(a.bytes),
                a.over.join(" and ")
            ));
        }
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|f| f.username.clone()).collect();
        return Err(PartialFailure::new(tenants.len(), &names).into());
    }
    Ok(if alerts.is_empty() {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}

fn print_table(ctx: &Context, shown: &[stats::TenantStats], per_table: bool) {
    if shown.is_empty() {
        return;
    }
    let width = shown
        .iter()
        .map(|s| s.username.len().max(s.tenant_key.len()))
        .max()
        .unwrap_or(8)
        .max(13);
    ctx.say(format!(
        "{:width$}  {:width$}  {:>12}  {:>10}  LARGEST TABLE",
        "USERNAME", "KEY", "ROWS", "BYTES"
    ));
    let rows = |n: Option<i64>, exact: bool| match n {
        None => "?".to_string(),
        Some(n) if exact => n.to_string(),
        Some(n) => format!("~{n}"),
    };
    for s in shown {
        let largest = s
            .tables
            .first()
            .map(|t| {
                format!(
                    "{} ({})",
                    t.table,
                    t.bytes.map(human_bytes).unwrap_or("?".into())
                )
            })
            .unwrap_or_default();
        ctx.say(format!(
            "{:width$}  {:width$}  {:>12}  {:>10}  {largest}",
            s.username,
            s.tenant_key,
            // Unknown when no table of the tenant was ever analyzed.
            rows(
                (s.unanalyzed_tables < s.tables.len()).then_some(s.rows),
                s.rows_exact
            ),
            human_bytes(s.bytes)
        ));
        if per_table {
            // The table names line up with the figures of the tenant line.
            let w2 = width * 2;
            for t in &s.tables {
                let name = if stats::is_user_data(&t.table) {
                    t.table.clone()
                } else {
                    format!("{} (bookkeeping, not counted)", t.table)
                };
                ctx.say(format!(
                    "  {:<w2$}  {:>12}  {:>10}",
                    name,
                    rows(t.rows, s.rows_exact),
                    t.bytes.map(human_bytes).unwrap_or("?".into()),
                ));
            }
        }
    }
}
