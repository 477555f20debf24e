#!/usr/bin/env bash
# `staves validate` on specs full of errors (issue 10): N package tables that each break one rule, text and JSON.
#
# Each spec lists N packages and has N package tables `['cat-K/pkgI'] use = ['bad flag']`, so it yields exactly N
# error diagnostics. Rendering them must grow linearly with N (a line index built once): the target is at most
# 1 s for 100,000 in either format. Prints a Markdown table with the fastest wall time of REPEAT runs, the CPU time
# (user + system) of that run, and the largest peak RSS (/usr/bin/time -v). On a shared machine the CPU time is the
# steadier figure.
#
# usage: benches/validate-errors.sh [N...]          (default: 20000 100000)
#   env: STAVES=path/to/staves (default: target/release/staves, built when missing)
#        REPEAT=n runs per case (default 3)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
staves=${STAVES:-$repo/target/release/staves}
if [[ ! -x $staves ]]; then
    (cd "$repo" && cargo build --release -p staves-cli)
fi
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is missing (apt-get install time)" >&2; exit 1; }
repeat=${REPEAT:-3}
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(20000 100000)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "| tables (errors) | spec size (bytes) | format | wall (s) | CPU (s) | peak RSS (MiB) | output (bytes) |"
echo "|---:|---:|---|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
    spec=$work/errors-$n.toml
    python3 - "$n" "$spec" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("name = 'staves/bench'\npackages = [\n")
    f.writelines(f"  'cat-{i % 100}/pkg{i}',\n" for i in range(n))
    f.write("]\n")
    f.writelines(f"['cat-{i % 100}/pkg{i}']\nuse = ['bad flag']\n" for i in range(n))
PY
    for format in text json; do
        best="" cpu="" rss=0
        for _ in $(seq "$repeat"); do
            status=0
            /usr/bin/time -v -o "$work/time" "$staves" validate --config "$spec" --format "$format" \
                >"$work/out" 2>"$work/err" || status=$?
            if [[ $status -ne 1 ]]; then
                echo "staves validate exited $status (expected 1):" >&2
                cat "$work/err" >&2
                exit 1
            fi
            wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time" |
                awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
            kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
            used=$(awk -F': ' '/User time|System time/ {t += $2} END {print t}' "$work/time")
            if [[ -z $best ]] || awk -v a="$wall" -v b="$best" 'BEGIN { exit !(a < b) }'; then
                best=$wall cpu=$used
            fi
            (( kib > rss )) && rss=$kib
        done
        # Every diagnostic is there: N `error:` headers in text, N objects in JSON.
        if [[ $format == text ]]; then
            count=$(grep -c '^error: ' "$work/out" || true)
        else
            count=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$work/out")
        fi
        if [[ $count -ne $n ]]; then
            echo "expected $n diagnostics in $format output, found $count" >&2
            exit 1
        fi
        printf '| %d | %d | %s | %.2f | %.2f | %.1f | %d |\n' "$n" "$(stat -c %s "$spec")" "$format" "$best" "$cpu" \
            "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$(stat -c %s "$work/out")"
    done
done
