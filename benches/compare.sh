#!/usr/bin/env bash
# Whole-process allocator comparison: the same workloads under glibc,
# mimalloc, jemalloc and engram (LD_PRELOAD), interleaved, median of N runs,
# time and peak-RSS ratios against glibc and their geometric means.
#
#   benches/compare.sh [options]
#
# See benches/README.md for what each workload does. Run with --help for the
# options. Needs cc, python3, and for the real-program set sqlite3, git, g++,
# perl, gawk, jq, redis-server + redis-benchmark (a missing program skips its
# workload, with a note). Debian 12 packages:
#   apt-get install -y libmimalloc2.0 libjemalloc2 sqlite3 gawk jq redis-server redis-tools
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
wl_src="$here/workloads"

reps=3
switches=0
only=""
sets="synthetic,real"
engram_so="${ENGRAM_SO:-$root/target/release/libengram_malloc.so}"
build_engram=0
md_out=""
workdir=""
timeout_s=300
cmdline="benches/compare.sh${*:+ $*}"

usage() {
    cat <<'EOF'
usage: benches/compare.sh [options]

  -n, --reps N         runs per workload and allocator; the median is reported (default 3)
  --engram-switches    also run engram with each hardening switch turned off, one at a time
                       (ENGRAM_MALLOC=guard=0, quarantine=0, zero=0, canary=0, random=0)
                       and all of them off, and report what each switch costs
  --engram-env LIST    also run engram under each of these ENGRAM_MALLOC values, one
                       column each (';'-separated, e.g. 'tcache=32;tcache=16,quarantine=32')
  --only LIST          only these workloads (comma-separated names, see below)
  --synthetic-only     only the C workloads of benches/workloads/
  --real-only          only the real programs
  --engram-so PATH     the engram .so to preload (default: target/release/libengram_malloc.so,
                       or $ENGRAM_SO); a missing file shows as n/a
  --build-engram       cargo build --release -p engram-malloc first
  --md FILE            also write the markdown report to FILE
  --workdir DIR        inputs, binaries, logs and raw results (default: target/compare)
  --timeout S          kill a run after S seconds and mark it TIMEOUT (default 300)
  -h, --help           this text

workloads
  synthetic: larson xmalloc small_objects realloc large_blocks
  real:      python sqlite git gxx redis perl gawk jq
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    -n | --reps) reps=$2; shift 2 ;;
    --engram-switches) switches=1; shift ;;
    --engram-env) engram_envs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --synthetic-only) sets=synthetic; shift ;;
    --real-only) sets=real; shift ;;
    --engram-so) engram_so=$2; shift 2 ;;
    --build-engram) build_engram=1; shift ;;
    --md) md_out=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $reps in '' | *[!0-9]* | 0) echo "compare.sh: --reps wants a positive integer" >&2; exit 2 ;; esac

workdir=${workdir:-$root/target/compare}
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)
# One run per work directory: a second one would wipe this one's results (and
# on a small machine spoil its timings anyway).
exec 9>"$workdir/.lock"
if ! flock -n 9; then
    echo "compare.sh: another compare.sh is running in $workdir (use --workdir for a second one)" >&2
    exit 1
fi
bin="$workdir/bin"
inputs="$workdir/inputs"
runs="$workdir/runs"
mkdir -p "$bin" "$inputs"
rm -rf "$runs"
mkdir -p "$runs"

log() { printf '[compare] %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

for tool in cc awk; do
    have "$tool" || { echo "compare.sh: $tool is required" >&2; exit 1; }
done

# ---------------------------------------------------------------- allocators
find_lib() { # first existing path among the arguments, else the ldconfig hit for $1's basename
    local p
    for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done
    ldconfig -p 2>/dev/null | awk -v n="$(basename "$1")" '$1 == n && !p { p = $NF } END { if (p) print p }'
}
mimalloc_so=$(find_lib /usr/lib/x86_64-linux-gnu/libmimalloc.so.2 /usr/lib/aarch64-linux-gnu/libmimalloc.so.2)
jemalloc_so=$(find_lib /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 /usr/lib/aarch64-linux-gnu/libjemalloc.so.2)

if [ "$build_engram" = 1 ]; then
    log "cargo build --release -p engram-malloc"
    (cd "$root" && cargo build --release -p engram-malloc)
fi

# A configuration: name, preload path ("" = system allocator, "-" = not
# available), ENGRAM_MALLOC value ("" = unset).
cfg_name=() cfg_so=() cfg_env=()
add_cfg() { cfg_name+=("$1"); cfg_so+=("$2"); cfg_env+=("$3"); }

usable_so() { # a preload that loads and runs /bin/true
    [ -n "$1" ] && [ -e "$1" ] && LD_PRELOAD="$1" /bin/true 2>/dev/null
}
add_cfg glibc "" ""
if usable_so "$mimalloc_so"; then add_cfg mimalloc "$mimalloc_so" ""; else add_cfg mimalloc - ""; log "mimalloc not found (apt-get install libmimalloc2.0): n/a"; fi
if usable_so "$jemalloc_so"; then add_cfg jemalloc "$jemalloc_so" ""; else add_cfg jemalloc - ""; log "jemalloc not found (apt-get install libjemalloc2): n/a"; fi
engram_ok=0
if usable_so "$engram_so"; then
    engram_so=$(cd "$(dirname "$engram_so")" && pwd)/$(basename "$engram_so")
    engram_ok=1
    add_cfg engram "$engram_so" ""
else
    if [ -e "$engram_so" ]; then log "$engram_so does not load (LD_PRELOAD=... /bin/true fails): n/a"; else log "$engram_so missing: engram n/a"; fi
    add_cfg engram - ""
fi
# An engram column run under ENGRAM_MALLOC=$2, labelled engram[$1] (n/a without the .so).
add_engram_cfg() {
    if [ "$engram_ok" = 1 ]; then add_cfg "engram[$1]" "$engram_so" "$2"; else add_cfg "engram[$1]" - "$2"; fi
}
switch_list=(guard=0 quarantine=0 zero=0 canary=0 random=0 "guard=0,quarantine=0,zero=0,canary=0,random=0")
switch_label=(guard=0 quarantine=0 zero=0 canary=0 random=0 all-off)
if [ "$switches" = 1 ]; then
    for i in "${!switch_list[@]}"; do add_engram_cfg "${switch_label[$i]}" "${switch_list[$i]}"; done
fi
if [ -n "${engram_envs:-}" ]; then
    IFS=';' read -r -a env_list <<<"$engram_envs"
    for e in "${env_list[@]}"; do
        [ -n "$e" ] && add_engram_cfg "$e" "$e"
    done
fi
ncfg=${#cfg_name[@]}

# ---------------------------------------------------------------- build + inputs
log "building workloads into $bin"
cc -O2 -Wall -Wextra -o "$bin/measure" "$wl_src/measure.c"
synthetic=(larson xmalloc small_objects realloc large_blocks)
for w in "${synthetic[@]}"; do
    cc -O2 -pthread -Wall -Wextra -o "$bin/$w" "$wl_src/$w.c"
done

python=""
for p in /usr/bin/python3 "$(command -v python3 || true)"; do
    [ -n "$p" ] && [ -x "$p" ] && { python=$p; break; }
done

gen_stamp="$inputs/.stamp-$(cksum <"$wl_src/gen_inputs.py" | cut -d' ' -f1)"
if [ -n "$python" ] && [ ! -e "$gen_stamp" ]; then
    log "generating inputs (git fast-import stream, CSV, JSON)"
    rm -rf "$inputs"
    mkdir -p "$inputs"
    "$python" "$wl_src/gen_inputs.py" "$inputs"
    if have git; then
        git init -q --bare "$inputs/repo"
        git -C "$inputs/repo" fast-import --quiet <"$inputs/git.fi"
        git -C "$inputs/repo" gc --aggressive --quiet
    fi
    touch "$gen_stamp"
fi
# Keep the user's git configuration out of the measurement.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export LC_ALL=C

# ---------------------------------------------------------------- workloads
# workload_cmd NAME: sets CMD (the argv to measure) or returns 1 with SKIP set.
# The sh -c scripts take their paths as positional parameters, hence single quotes.
# shellcheck disable=SC2016
workload_cmd() {
    SKIP=""
    case $1 in
    larson | xmalloc | small_objects | realloc | large_blocks) CMD=("$bin/$1") ;;
    python)
        [ -n "$python" ] || { SKIP="python3 not installed"; return 1; }
        CMD=("$python" "$wl_src/python_alloc.py") ;;
    sqlite)
        have sqlite3 || { SKIP="sqlite3 not installed"; return 1; }
        CMD=(sh -c 'sqlite3 "$1" <"$2"' sh "$workdir/bench.db" "$wl_src/sqlite_bulk.sql") ;;
    git)
        have git || { SKIP="git not installed"; return 1; }
        [ -d "$inputs/repo" ] || { SKIP="no generated repository (python3 missing?)"; return 1; }
        CMD=(sh -c 'git -C "$1" log -p --stat main | cksum && git -C "$1" gc --aggressive --quiet' sh "$inputs/repo") ;;
    gxx)
        have g++ || { SKIP="g++ not installed"; return 1; }
        CMD=(sh -c 'g++ -O2 -std=c++17 -c "$1" -o "$2" && cksum <"$2"' sh "$wl_src/cxx_compile.cpp" "$workdir/cxx_compile.o") ;;
    redis)
        { have redis-server && have redis-benchmark && have redis-cli; } || { SKIP="redis-server/redis-tools not installed"; return 1; }
        mkdir -p "$workdir/redis"
        CMD=("$wl_src/redis_bench.sh" "$workdir/redis") ;;
    perl)
        have perl || { SKIP="perl not installed"; return 1; }
        CMD=(perl "$wl_src/perl_hash.pl") ;;
    gawk)
        have gawk || { SKIP="gawk not installed"; return 1; }
        [ -e "$inputs/data.csv" ] || { SKIP="no generated CSV (python3 missing?)"; return 1; }
        CMD=(sh -c 'gawk -f "$1" "$2" | cksum' sh "$wl_src/gawk_words.awk" "$inputs/data.csv") ;;
    jq)
        have jq || { SKIP="jq not installed"; return 1; }
        [ -e "$inputs/data.json" ] || { SKIP="no generated JSON (python3 missing?)"; return 1; }
        CMD=(sh -c 'jq -c -f "$1" "$2" | cksum' sh "$wl_src/jq_query.jq" "$inputs/data.json") ;;
    *) SKIP="unknown workload"; return 1 ;;
    esac
}
prepare() { # per-run state reset, outside the measurement
    case $1 in
    sqlite) rm -f "$workdir/bench.db" ;;
    gxx) rm -f "$workdir/cxx_compile.o" ;;
    esac
}

real=(python sqlite git gxx redis perl gawk jq)
wanted=()
for s in ${sets//,/ }; do
    if [ "$s" = synthetic ]; then wanted+=("${synthetic[@]}"); else wanted+=("${real[@]}"); fi
done
if [ -n "$only" ]; then
    sel=()
    for w in ${only//,/ }; do
        case " ${synthetic[*]} ${real[*]} " in *" $w "*) sel+=("$w") ;; *) echo "compare.sh: unknown workload $w" >&2; exit 2 ;; esac
    done
    wanted=("${sel[@]}")
fi
kind_of() { case " ${synthetic[*]} " in *" $1 "*) echo synthetic ;; *) echo real ;; esac; }

# run_one WORKLOAD CFG_INDEX TAG: one measured run; appends to results.tsv
results="$runs/results.tsv"
: >"$results"
run_one() {
    local w=$1 c=$2 tag=$3
    local so=${cfg_so[$c]} envv=${cfg_env[$c]} name=${cfg_name[$c]}
    local base="$runs/$w.$c.$tag"
    prepare "$w"
    local -a envcmd=(env -u ENGRAM_MALLOC -u LD_PRELOAD)
    [ -n "$envv" ] && envcmd+=("ENGRAM_MALLOC=$envv")
    "${envcmd[@]}" "$bin/measure" "$base.m" "$so" "$timeout_s" -- "${CMD[@]}" \
        </dev/null >"$base.out" 2>"$base.err" 9>&- || true
    local secs rss status
    read -r secs rss status <"$base.m" || { secs=0 rss=0 status=255; }
    local sum
    sum=$(cksum <"$base.out" | cut -d' ' -f1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$name" "$tag" "$secs" "$rss" "$status" "$sum" >>"$results"
    printf '  %-14s %-30s %-4s %8.3fs %8d KiB  exit %s\n' "$w" "$name" "$tag" "$secs" "$rss" "$status" >&2
}

# ---------------------------------------------------------------- run
skipped=()
active=()
for w in "${wanted[@]}"; do
    if workload_cmd "$w"; then active+=("$w"); else skipped+=("$w: $SKIP"); log "skipping $w: $SKIP"; fi
done
[ ${#active[@]} -gt 0 ] || { echo "compare.sh: nothing to run" >&2; exit 1; }

start_load=$(cut -d' ' -f1-3 /proc/loadavg)
# What engram is: the tree's commit (+dirty if alloc/ or ffi/ differ from it)
# and when the .so was built, taken now, before the tree can move.
engram_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$root" diff --quiet HEAD -- alloc ffi 2>/dev/null || engram_rev="$engram_rev+dirty"
if [ "$engram_ok" = 1 ]; then
    engram_rev="$engram_rev, .so built $(date -u -r "$engram_so" '+%Y-%m-%d %H:%M UTC')"
else
    engram_rev="n/a"
fi
t_start=$(date +%s)
log "reference run of each workload under glibc (warms caches, not counted)"
for w in "${active[@]}"; do
    workload_cmd "$w"
    run_one "$w" 0 ref
done
for ((r = 1; r <= reps; r++)); do
    log "repetition $r of $reps"
    for wi in "${!active[@]}"; do
        w=${active[$wi]}
        workload_cmd "$w"
        # Rotate the allocator order per repetition (and per workload) so no
        # allocator always runs first or after the same neighbour.
        for ((k = 0; k < ncfg; k++)); do
            c=$(((k + r - 1 + wi) % ncfg))
            [ "${cfg_so[$c]}" = - ] && continue
            run_one "$w" "$c" "$r"
        done
    done
done
t_end=$(date +%s)

# ---------------------------------------------------------------- report
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }

{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine=$(nproc) cores, ${cpu:-unknown CPU}, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
    echo "command=$cmdline"
    echo "reps=$reps"
    echo "load=$start_load"
    echo "elapsed=$((t_end - t_start))"
    echo "versions=glibc $(ldd --version 2>/dev/null | awk 'NR == 1 { print $NF }'), mimalloc $(pkgver libmimalloc2.0), jemalloc $(pkgver libjemalloc2), engram $engram_rev"
    for s in "${skipped[@]}"; do echo "skipped=$s"; done
} >"$runs/meta.txt"

cfg_list=$(printf '%s\n' "${cfg_name[@]}" | paste -sd'|')
cfg_avail=$(for c in "${!cfg_name[@]}"; do [ "${cfg_so[$c]}" = - ] && echo 0 || echo 1; done | paste -sd'|')
kinds=$(for w in "${active[@]}"; do echo "$w=$(kind_of "$w")"; done | paste -sd'|')

report() { # $1: text | md
    awk -F'\t' -v mode="$1" -v cfgs="$cfg_list" -v avail="$cfg_avail" -v kinds="$kinds" \
        -v wls="$(printf '%s|' "${active[@]}")" -v meta="$runs/meta.txt" '
    function median(key,   n, i, j, t, a) {
        n = cnt[key]
        for (i = 1; i <= n; i++) a[i] = vals[key, i]
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        if (n % 2) return a[(n + 1) / 2]
        return (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt_ratio(x) { return sprintf("%.2f", x) }
    function row(cells, n,   i, s) {
        if (mode == "md") { s = "|"; for (i = 1; i <= n; i++) s = s " " cells[i] " |"; print s; return }
        s = sprintf("%-18s", cells[1])
        for (i = 2; i <= n; i++) s = s sprintf(" %" cw "s", cells[i])
        print s
    }
    function sep(n,   i, s) {
        if (mode == "md") { s = "|"; for (i = 1; i <= n; i++) s = s (i == 1 ? " --- |" : " ---: |"); print s }
        else { s = ""; for (i = 0; i < 18 + (cw + 1) * (n - 1); i++) s = s "-"; print s }
    }
    BEGIN {
        nc = split(cfgs, cname, "|"); split(avail, cav, "|")
        cw = 18
        for (j = 1; j <= nc; j++) if (length(cname[j]) > cw) cw = length(cname[j])
        nw = split(wls, wname, "|"); nw--
        nk = split(kinds, kk, "|")
        for (i = 1; i <= nk; i++) { split(kk[i], kv, "="); kind[kv[1]] = kv[2] }
        while ((getline line < meta) > 0) { p = index(line, "="); m[substr(line, 1, p - 1)] = m[substr(line, 1, p - 1)] (m[substr(line, 1, p - 1)] == "" ? "" : "; ") substr(line, p + 1) }
    }
    {
        w = $1; c = $2; tag = $3
        if (tag == "ref") { refsum[w] = $7; next }
        if ($6 != 0) { failed[w, c] = ($6 == 124 ? "TIMEOUT" : "FAIL(" $6 ")"); next }
        if (w in refsum && $7 != refsum[w]) wrong[w, c] = 1
        cnt[w, c "t"]++; vals[w, c "t", cnt[w, c "t"]] = $4
        cnt[w, c "r"]++; vals[w, c "r", cnt[w, c "r"]] = $5
    }
    END {
        for (i = 1; i <= nw; i++) {
            w = wname[i]
            for (j = 1; j <= nc; j++) {
                c = cname[j]
                if (cnt[w, c "t"] > 0) { t[w, c] = median(w SUBSEP c "t"); r[w, c] = median(w SUBSEP c "r") }
            }
        }
        if (mode == "md") {
            print "Measured " m["date"] " on " m["machine"] "."
            print ""
            print "Command: `" m["command"] "` (median of " m["reps"] " interleaved runs; load average at start " m["load"] "; " m["elapsed"] " s)."
            print ""
            print "Versions: " m["versions"] "."
            print ""
            print "Each cell: time ratio / peak-RSS ratio against glibc (lower is better); the glibc column is absolute."
            print ""
        } else {
            print ""
            print "machine:  " m["machine"]
            print "date:     " m["date"] "   load at start: " m["load"] "   elapsed: " m["elapsed"] " s"
            print "versions: " m["versions"]
            print "median of " m["reps"] " interleaved runs; cells: time ratio / peak-RSS ratio vs glibc"
            print ""
        }
        ncell = 0; hdr[++ncell] = "workload"
        for (j = 1; j <= nc; j++) hdr[++ncell] = (j == 1 ? "glibc s / MiB" : cname[j])
        row(hdr, ncell); sep(ncell)
        for (pass = 1; pass <= 2; pass++) {
            set = (pass == 1 ? "real" : "synthetic")
            any = 0
            for (i = 1; i <= nw; i++) {
                w = wname[i]
                if (kind[w] != set) continue
                any = 1
                delete cell; n = 0; cell[++n] = w
                for (j = 1; j <= nc; j++) {
                    c = cname[j]
                    if (cav[j] == 0) { cell[++n] = "n/a"; continue }
                    if ((w, c) in failed) { cell[++n] = failed[w, c]; continue }
                    if (!((w, c) in t)) { cell[++n] = "n/a"; continue }
                    flag = ((w, c) in wrong) ? "!" : ""
                    if (j == 1) { cell[++n] = sprintf("%.2f / %.0f", t[w, c], r[w, c] / 1024) flag; continue }
                    g = cname[1]
                    if (!((w, g) in t)) { cell[++n] = "n/a"; continue }
                    tr = t[w, c] / t[w, g]; rr = r[w, c] / r[w, g]
                    cell[++n] = fmt_ratio(tr) " / " fmt_ratio(rr) flag
                    lt[set, c] += log(tr); lr[set, c] += log(rr); gn[set, c]++
                    if (tr > worst[set, c]) { worst[set, c] = tr; worstw[set, c] = w }
                }
                row(cell, n)
            }
            if (!any) continue
            setn[set] = 0
            for (i = 1; i <= nw; i++) if (kind[wname[i]] == set) setn[set]++
            delete cell; n = 0; cell[++n] = (mode == "md" ? "**geomean " set "**" : "geomean " set)
            for (j = 1; j <= nc; j++) {
                c = cname[j]
                if (j == 1) { cell[++n] = "1.00 / 1.00"; continue }
                if (gn[set, c] == 0) { cell[++n] = "n/a"; continue }
                s = fmt_ratio(exp(lt[set, c] / gn[set, c])) " / " fmt_ratio(exp(lr[set, c] / gn[set, c]))
                if (gn[set, c] < setn[set]) s = s " (" gn[set, c] "/" setn[set] ")"
                cell[++n] = (mode == "md" ? "**" s "**" : s)
            }
            row(cell, n)
            delete cell; n = 0; cell[++n] = "worst time " set
            for (j = 1; j <= nc; j++) {
                c = cname[j]
                if (j == 1 || gn[set, c] == 0) { cell[++n] = (j == 1 ? "" : "n/a"); continue }
                cell[++n] = fmt_ratio(worst[set, c]) " " worstw[set, c]
            }
            row(cell, n)
            if (pass == 1 && mode != "md") sep(ncell)
        }
        # The cost of each hardening switch: engram (defaults) over engram with it off.
        base = ""
        for (j = 1; j <= nc; j++) if (cname[j] == "engram") base = j
        nsw = 0
        for (j = 1; j <= nc; j++) if (cname[j] ~ /^engram\[/) nsw++
        if (nsw > 0 && base != "" && cav[base] == 1) {
            print ""
            if (mode == "md") print "Cost of each hardening switch (or other ENGRAM_MALLOC setting): geomean of engram (all defaults) over engram[setting]; 1.10 means the defaults cost 10% more than that setting."
            else print "cost of each hardening switch or setting: geomean of engram (defaults) / engram[setting]"
            if (mode == "md") print ""
            delete cell; n = 0
            cell[++n] = "setting"; cell[++n] = "real time"; cell[++n] = "real RSS"; cell[++n] = "synth time"; cell[++n] = "synth RSS"
            row(cell, n); sep(n)
            for (j = 1; j <= nc; j++) {
                c = cname[j]
                if (c !~ /^engram\[/) continue
                delete cell; n = 0; cell[++n] = substr(c, 8, length(c) - 8)
                for (pass = 1; pass <= 2; pass++) {
                    set = (pass == 1 ? "real" : "synthetic")
                    st = 0; sr = 0; k = 0
                    for (i = 1; i <= nw; i++) {
                        w = wname[i]
                        if (kind[w] != set || !((w, c) in t) || !((w, "engram") in t)) continue
                        st += log(t[w, "engram"] / t[w, c]); sr += log(r[w, "engram"] / r[w, c]); k++
                    }
                    if (k == 0) { cell[++n] = "n/a"; cell[++n] = "n/a" }
                    else { cell[++n] = fmt_ratio(exp(st / k)); cell[++n] = fmt_ratio(exp(sr / k)) }
                }
                row(cell, n)
            }
        }
        notes = 0
        for (k in wrong) { split(k, kp, SUBSEP); if (!notes++) print ""; print (mode == "md" ? "- " : "") "! output of " kp[1] " under " kp[2] " differs from the glibc reference run" }
        for (k in failed) { split(k, kp, SUBSEP); if (!notes++) print ""; print (mode == "md" ? "- " : "") failed[k] ": " kp[1] " under " kp[2] " (see runs/" kp[1] ".*.err)" }
        if ("skipped" in m) { if (!notes++) print ""; print (mode == "md" ? "- " : "") "skipped: " m["skipped"] }
    }' "$results"
}

report text
report md >"$workdir/results.md"
[ -n "$md_out" ] && cp "$workdir/results.md" "$md_out"
echo
echo "markdown (also in $workdir/results.md; raw runs in $results):"
echo
cat "$workdir/results.md"
