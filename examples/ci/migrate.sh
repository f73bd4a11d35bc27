#!/usr/bin/env bash
# The shell steps of the migration pipelines (github-actions.yml and gitlab-ci.yml call this
# script and nothing else, so the two cannot drift apart):
#
#   migrate.sh check    pull request: the SQL each tenant would get (migrate --all --dry-run)
#                       and whether every tenant's tables match its version (verify --all);
#                       changes nothing.
#   migrate.sh deploy   main branch: the tenants pending (tenants --pending), a canary slice of
#                       the oldest ones (migrate --all --limit N --order oldest), then the rest
#                       (migrate --all); the rest is not touched when the canary fails.
#
# Environment:
#   PATHFINDER_DATABASE_URL   required; a secret of the CI system, never printed
#   PATHFINDER_CI_REPORT_DIR  folder for the --json reports, one file per step
#                             (default: pathfinder-reports); publish it as an artifact
#   PATHFINDER_CI_CANARY      tenants in the canary slice (default: 10)
#   PATHFINDER_JOBS           parallel connections (read by pathfinder-db itself)
#
# Exit code: 0 when every step succeeded, else the code of the step that failed, as
# pathfinder-db documents them: 1 error (for verify also: drift found), 2 usage or
# configuration error, 3 some tenants failed (the report lists them; a re-run finishes
# exactly those). Nothing here prints the environment (no `set -x`): pathfinder-db removes
# passwords from its own messages, and the master key is not needed by these steps.
set -euo pipefail

die() {
  echo "migrate.sh: $*" >&2
  exit 2
}

[ $# -eq 1 ] && { [ "$1" = check ] || [ "$1" = deploy ]; } ||
  die "usage: migrate.sh check|deploy (check for pull requests, deploy for the main branch)"
mode=$1
command -v pathfinder-db >/dev/null 2>&1 ||
  die "pathfinder-db is not on PATH: build it (cargo build --release --locked) and add target/release to PATH"
[ -n "${PATHFINDER_DATABASE_URL:-}" ] ||
  die "PATHFINDER_DATABASE_URL is not set: store the database URL as a masked secret of the CI system and pass it to this job"
canary=${PATHFINDER_CI_CANARY:-10}
case $canary in
  '' | *[!0-9]* | 0) die "PATHFINDER_CI_CANARY must be a whole number of at least 1 (the tenants in the canary slice)" ;;
esac
reports=${PATHFINDER_CI_REPORT_DIR:-pathfinder-reports}
mkdir -p "$reports" || die "cannot create the report folder $reports: set PATHFINDER_CI_REPORT_DIR to a writable folder"

# step NAME ARGS...: runs `pathfinder-db --json ARGS` with its JSON report in $reports/NAME.json,
# says what its exit code means and returns that code.
step() {
  local name=$1 report="$reports/$1.json" rc=0
  shift
  pathfinder-db --json "$@" >"$report" || rc=$?
  [ -s "$report" ] || rm -f "$report"
  case $rc in
    0) echo "ok: $name (report: $report)" ;;
    1)
      # A command that failed as a whole prints {"error", "exit_code", ...}.
      if [ -f "$report" ] && ! grep -q '"exit_code"' "$report"; then
        echo "FAILED: $name (exit 1): the report lists what failed: $report" >&2
      else
        echo "FAILED: $name (exit 1): an error; the message above says what and how to fix it (also in $report)" >&2
      fi
      ;;
    2) echo "FAILED: $name (exit 2): a usage or configuration error (see above); nothing was changed" >&2 ;;
    3) echo "FAILED: $name (exit 3): some tenants failed, listed in $report; fix the cause and re-run this job: it finishes only what is left" >&2 ;;
    *) echo "FAILED: $name: unexpected exit code $rc" >&2 ;;
  esac
  return "$rc"
}

check() {
  step migrate-dry-run migrate --all --dry-run || return
  step verify verify --all
}

deploy() {
  step pending tenants --pending || return
  step migrate-canary migrate --all --limit "$canary" --order oldest || {
    local rc=$?
    echo "the canary slice failed: the other tenants were not migrated" >&2
    return "$rc"
  }
  step migrate-all migrate --all
}

# A report left by an earlier run in the same folder must not pass for this run's.
case $mode in
  check) rm -f "$reports/migrate-dry-run.json" "$reports/verify.json" ;;
  deploy) rm -f "$reports/pending.json" "$reports/migrate-canary.json" "$reports/migrate-all.json" ;;
esac

rc=0
"$mode" || rc=$?
if [ "$rc" -eq 0 ]; then
  echo "migrate.sh $mode: done"
else
  echo "migrate.sh $mode: failed with exit code $rc" >&2
fi
exit "$rc"
