#!/bin/bash
# Counts what herald writes to its SQLite file per delivery: runs scenario (a) with
# 60,000 messages and, 3 s in, samples herald for 3 s: fsync and pwrite calls
# (perf's syscall tracepoints), bytes written (/proc/PID/io) and deliveries made
# (/metrics) in the same window. Needs linux-perf. Usage:
#   crates/herald-bench/scripts/wal-writes.sh [DIR]   # DIR holds herald and herald-bench (default target/release)
set -euo pipefail
dir=${1:-target/release}
out=$(mktemp)
"$dir/herald-bench" --scenario sqlite --runs 1 --messages 60000 > "$out" 2>&1 &
bench=$!
sleep 3
pid=$(pgrep -n -x herald)
port=$(ss -ltnp | grep "pid=$pid," | awk '{print $4}' | head -1)
delivered() { curl -s "http://$port/metrics" | awk '/^herald_attempts_total\{outcome="success"\}/{print $2}'; }
written() { awk '/^write_bytes/{print $2}' "/proc/$pid/io"; }
d1=$(delivered); w1=$(written)
counts=$(perf stat -x, -e 'syscalls:sys_enter_fsync,syscalls:sys_enter_pwrite64' -p "$pid" -- sleep 3 2>&1)
d2=$(delivered); w2=$(written)
fsyncs=$(echo "$counts" | grep fsync | cut -d, -f1)
pwrites=$(echo "$counts" | grep pwrite | cut -d, -f1)
n=$((d2 - d1))
wait "$bench"
echo "deliveries $n, fsync $fsyncs, pwrite $pwrites"
echo "per delivery: $(echo "scale=2; $pwrites / $n" | bc) pwrites, $(echo "scale=2; ($w2 - $w1) / $n / 1024" | bc) KiB; $(echo "scale=1; $n / $fsyncs" | bc) deliveries per fsync"
tail -1 "$out"
rm -f "$out"
