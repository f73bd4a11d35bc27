#!/usr/bin/env bash
# Times the README's two quick-start commands as a new user runs them: a fresh clone in a
# scratch folder, crates already downloaded (cargo fetch, untimed), nothing built.
#
#   benches/first_run.sh                 # clones this repository's HEAD
#   benches/first_run.sh --rev <commit>  # another commit (e.g. the one before a change)
#   benches/first_run.sh --keep          # keep the scratch folder
#
# The two commands are read from the README's "Quick start" block, so the script times
# exactly what the README promises. It prints the seconds of each, their sum, the size of
# target/ afterwards, and whether both limits (5 minutes in all, target/ within 2 GB) hold.
# PATHFINDER_* variables are unset: a new user has no PostgreSQL configured.
set -euo pipefail

# The repository the script lives in (or, for a copy of the script, the one it is run in).
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || git rev-parse --show-toplevel)
rev=HEAD
keep=
while [ $# -gt 0 ]; do
  case "$1" in
    --rev) rev=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pf-first-run.XXXXXX")
trap '[ -n "$keep" ] || rm -rf "$scratch"' EXIT
git clone -q "$repo" "$scratch/pathfinder-db"
cd "$scratch/pathfinder-db"
git checkout -q "$rev"
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
for var in $(env | sed -n 's/^\(PATHFINDER_[A-Z_]*\)=.*/\1/p'); do unset "$var"; done

# The quick-start block: the first ```sh fence after the "Quick start" heading.
mapfile -t commands < <(awk '/^## Quick start/ { q = 1 } q && /^```sh/ { f = 1; next } f && /^```/ { exit } f && NF' README.md |
  sed 's/[[:space:]]*#.*$//')
if [ "${#commands[@]}" -ne 2 ]; then
  echo "expected two commands in the README's quick start, found ${#commands[@]}" >&2
  exit 1
fi

echo "fetching crates (untimed)" >&2
cargo fetch -q

# Wall and CPU seconds per command (bash's time: user + system of every child process).
# The load average before the first command shows whether the machine was idle.
load_before=$(cut -d' ' -f1 /proc/loadavg)
TIMEFORMAT='%R %U %S'
total=0
for i in 0 1; do
  echo "running: ${commands[$i]}" >&2
  if ! { time bash -c "${commands[$i]}" >"$scratch/command_$i.log" 2>&1; } 2>"$scratch/time_$i"; then
    echo "failed: ${commands[$i]} (log: $scratch/command_$i.log)" >&2
    keep=1
    exit 1
  fi
  read -r wall user sys <"$scratch/time_$i"
  seconds[$i]=$wall
  cpu[$i]=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.0f", u + s }')
  total=$(awk -v a="$total" -v b="$wall" 'BEGIN { printf "%.1f", a + b }')
done
target_bytes=$(du -sb target | cut -f1)
target_gb=$(awk -v b="$target_bytes" 'BEGIN { printf "%.2f", b / 1e9 }')
tests=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed;?$/) p += $(i-1) } END { print p + 0 }' "$scratch/command_1.log")

echo "first run of the README's quick start: $(git rev-parse --short HEAD), $(nproc) cores, load average before $load_before"
printf '%-60s %8.0f s  (%s s of CPU)\n' "${commands[0]}" "${seconds[0]}" "${cpu[0]}"
printf '%-60s %8.0f s  (%s s of CPU; %s tests passed)\n' "${commands[1]}" "${seconds[1]}" "${cpu[1]}" "$tests"
printf '%-60s %8.0f s  (limit 300 s)\n' "both" "$total"
printf '%-60s %8s GB (limit 2 GB)\n' "target/ afterwards" "$target_gb"
if awk -v t="$total" -v b="$target_bytes" 'BEGIN { exit !(t <= 300 && b <= 2e9) }'; then
  echo "limits: met"
else
  echo "limits: not met"
fi
