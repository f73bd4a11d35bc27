use super::Context;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(ctx: &Context, _args: Args) -> anyhow::Result<u8> {
    let report = crate::doctor::run(&ctx.config);
    if ctx.json {
        ctx.print_json(&serde_json::json!({
            "ok": report.ok(),
            "checks": report.checks,
            "failed": report.failed_tenants.iter().map(|(user, error)| {
                serde_json::json!({"username": user, "error": error})
            }).collect::<Vec<_>>(),
        }));
    } else {
        for c in &report.checks {
            let line = match &c.fix {
                Some(fix) if !c.ok => format!("fail  {}: {}; fix: {fix}", c.check, c.detail),
                _ => format!("ok    {}: {}", c.check, c.detail),
            };
            // The verdict is the result: printed even with --quiet.
            super::out(&format!("{line}\n"));
        }
    }
    Ok(if report.ok() {
        0
    } else {
        crate::error::EXIT_ERROR
    })
}
