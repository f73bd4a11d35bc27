//! Fleet-wide commands at scale (run by hand, not a test): provisions N tenants and times
//! every command that reads or sweeps the whole fleet, and the commands on named tenants,
//! so that work per tenant (or quadratic work) shows as time that grows with the fleet.
//!
//! ```sh
//! cargo bench --bench scale -- [--tenants 20000] [--step 2000] [--backend postgres|sqlite|both]
//!                              [--limit-seconds 120] [--server-url URL]
//! ```
//!
//! For each backend: a scratch database (PostgreSQL: `bench_scale_<pid>_*` on the server
//! from `--server-url`, `PATHFINDER_BENCH_POSTGRES_URL` or the local default; SQLite: a
//! temporary folder), `init` and the shipped retention policies, then tenants provisioned
//! in steps of `--step` (`provision --from-file --jobs 2`), the seconds per step printed so
//! that a per-tenant cost that grows with the fleet shows. After each step up to the last
//! the fleet-wide commands are timed once more, and the table at the end has the figures
//! at every size with the target of each. A command still running after `--limit-seconds`
//! is stopped and shown as `>LIMIT`. See benches/SCALE.md.

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

/// Options after `cargo bench --bench scale --`.
#[derive(clap::Parser)]
#[command(
    bin_name = "cargo bench --bench scale --",
    about = "every fleet-wide command timed as the fleet grows"
)]
struct Options {
    /// Tenants at the end
    #[arg(long, default_value_t = 20_000, value_parser = support::positive)]
    tenants: usize,
    /// Tenants provisioned between two measurements
    #[arg(long, default_value_t = 2_000, value_parser = support::positive)]
    step: usize,
    /// The backends to measure
    #[arg(long, value_enum, default_value_t = Backend::Both)]
    backend: Backend,
    /// Longest a command may take before it is stopped and shown as over the limit
    #[arg(long = "limit-seconds", value_name = "S", default_value_t = 120, value_parser = support::positive)]
    limit_seconds: usize,
    #[command(flatten)]
    server: support::Server,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Backend {
    Postgres,
    Sqlite,
    Both,
}

impl Options {
    fn backends(&self) -> Vec<&'static str> {
        match self.backend {
            Backend::Postgres => vec!["postgres"],
            Backend::Sqlite => vec!["sqlite"],
            Backend::Both => vec!["postgres", "sqlite"],
        }
    }

    fn limit(&self) -> Duration {
        Duration::from_secs(self.limit_seconds as u64)
    }
}

/// A command timed at every fleet size, with the target it should meet.
struct Probe {
    name: &'static str,
    args: &'static [&'static str],
    /// Seconds at the largest fleet; None: shown without a target.
    target: Option<f64>,
    /// Exit codes that are a result, not a failure (verify and doctor report drift with 1).
    allowed: &'static [i32],
}

const PROBES: &[Probe] = &[
    Probe {
        name: "migrate --all (nothing to do)",
        args: &["migrate", "--all"],
        target: Some(1.0),
        allowed: &[],
    },
    Probe {
        name: "status",
        args: &["status"],
        target: Some(1.0),
        allowed: &[],
    },
    Probe {
        name: "tenants --json",
        args: &["--json", "tenants"],
        target: Some(2.0),
        allowed: &[],
    },
    Probe {
        name: "retention run --all --dry-run",
        args: &["retention", "run", "--all", "--dry-run"],
        target: Some(20.0),
        allowed: &[],
    },
    Probe {
        name: "retention run --all (nothing due)",
        args: &["retention", "run", "--all"],
        target: Some(5.0),
        allowed: &[],
    },
    Probe {
        name: "keys status",
        args: &["keys", "status"],
        target: Some(20.0),
        allowed: &[],
    },
    Probe {
        name: "stats --all",
        args: &["stats", "--all"],
        target: Some(20.0),
        allowed: &[],
    },
    Probe {
        name: "verify --all",
        args: &["verify", "--all"],
        target: Some(20.0),
        allowed: &[1],
    },
    Probe {
        name: "adopt --scan --dry-run",
        args: &["adopt", "--scan", "--dry-run"],
        target: Some(20.0),
        allowed: &[],
    },
    Probe {
        name: "doctor",
        args: &["doctor"],
        target: Some(10.0),
        allowed: &[1],
    },
    Probe {
        name: "verify u00000001",
        args: &["verify", "u00000001"],
        target: Some(0.2),
        allowed: &[1],
    },
    Probe {
        name: "stats u00000001",
        args: &["stats", "u00000001"],
        target: Some(0.2),
        allowed: &[],
    },
    Probe {
        name: "export u00000001",
        args: &["export", "u00000001", "--out", "u00000001.jsonl", "--force"],
        target: Some(0.2),
        allowed: &[],
    },
];

fn username(i: usize) -> String {
    format!("u{i:08}")
}

/// Seconds as the table shows them: `>120` for a command stopped at the limit.
fn shown(run: &support::Run, limit: Duration) -> String {
    if run.code.is_none() {
        format!(">{}", limit.as_secs())
    } else {
        format!("{:.2}", run.elapsed.as_secs_f64())
    }
}

fn bench_backend(opts: &Options, backend: &str, report: &mut String) -> anyhow::Result<()> {
    let bin = support::release_binary()?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let mut scratch = None;
    let url = match backend {
        "postgres" => {
            let mut s = support::Scratch::new(&opts.server.url, "scale")?;
            let name = s.create("fleet", None)?;
            let url = s.url(&name);
            scratch = Some(s);
            url
        }
        _ => format!("sqlite://{}", dir.join("pathfinder.db").display()),
    };
    let run = |args: &[&str], allowed: &[i32]| {
        support::pathfinder(&bin, dir, &url, args, opts.limit(), allowed)
    };
    run(&["-q", "init"], &[])?;
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    run(
        &[
            "-q",
            "policies",
            "apply",
            "--dir",
            policies.to_str().unwrap(),
        ],
        &[],
    )?;

    let mut sizes = Vec::new();
    let mut table: Vec<Vec<String>> = vec![Vec::new(); PROBES.len()];
    let mut provisioned = 0;
    while provisioned < opts.tenants {
        let next = (provisioned + opts.step).min(opts.tenants);
        let users: String = (provisioned + 1..=next)
            .map(|i| username(i) + "\n")
            .collect();
        let file = dir.join("users.txt");
        std::fs::write(&file, users)?;
        if let Some(s) = scratch.as_mut() {
            s.checkpoint();
        }
        let step = support::pathfinder(
            &bin,
            dir,
            &url,
            &[
                "-q",
                "provision",
                "--from-file",
                file.to_str().unwrap(),
                "--jobs",
                "2",
            ],
            Duration::from_secs(24 * 3600),
            &[],
        )
        .context("provisioning a step")?;
        eprintln!(
            "{backend}: tenants {}..{next}: {:.1} s ({:.2} ms per tenant)",
            provisioned + 1,
            step.elapsed.as_secs_f64(),
            step.elapsed.as_secs_f64() * 1000.0 / (next - provisioned) as f64
        );
        provisioned = next;
        // The fleet-wide commands at a few sizes (every other step and the last).
        let steps_done = provisioned.div_ceil(opts.step);
        if provisioned == opts.tenants || steps_done % 2 == 1 {
            sizes.push(provisioned);
            for (probe, row) in PROBES.iter().zip(table.iter_mut()) {
                let r = run(probe.args, probe.allowed)
                    .with_context(|| format!("{} at {provisioned} tenants", probe.name))?;
                eprintln!(
                    "{backend}: {provisioned} tenants: {}: {} s",
                    probe.name,
                    shown(&r, opts.limit())
                );
                row.push(shown(&r, opts.limit()));
            }
        }
    }

    writeln!(report, "\n{backend}: seconds per command by fleet size")?;
    write!(report, "{:<36}", "command")?;
    for size in &sizes {
        write!(report, "{:>10}", size)?;
    }
    writeln!(report, "{:>10}  met", "target")?;
    for (probe, row) in PROBES.iter().zip(&table) {
        write!(report, "{:<36}", probe.name)?;
        for cell in row {
            write!(report, "{cell:>10}")?;
        }
        let last = row.last().and_then(|c| c.parse::<f64>().ok());
        let (target, met) = match (probe.target, last) {
            (Some(t), Some(l)) => (format!("{t}"), if l <= t { "yes" } else { "NO" }),
            (Some(t), None) => (format!("{t}"), "NO"),
            (None, _) => ("-".into(), ""),
        };
        writeln!(report, "{target:>10}  {met}")?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let opts = support::options::<Options>();
    let mut report = format!(
        "pathfinder-db at scale: {} tenants, steps of {}, commands stopped after {} s\n",
        opts.tenants,
        opts.step,
        opts.limit().as_secs()
    );
    for backend in &opts.backends() {
        if let Err(e) = bench_backend(&opts, backend, &mut report) {
            eprintln!("bench scale ({backend}): error: {e:#}");
            print!("{report}");
            return ExitCode::FAILURE;
        }
    }
    print!("{report}");
    ExitCode::SUCCESS
}
