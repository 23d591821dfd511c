#!/usr/bin/env bash
# redis workload: redis-server under the allocator being measured (LD_PRELOAD
# inherited from compare.sh's measurer), driven by redis-benchmark, which
# always runs on the system allocator so only the server's allocator changes.
#
#   redis_bench.sh DIR [REQUESTS]
#
# Debian's redis-server is linked against libjemalloc, so with no preload it
# would run on jemalloc; for the glibc column (empty LD_PRELOAD) the server is
# started with LD_PRELOAD=libc.so.6, which puts glibc's malloc ahead of
# jemalloc's in symbol resolution. Prints "redis ok" when the server ends up
# holding the data; the benchmark's own report goes to DIR/redis-bench.log.
set -euo pipefail
dir=$1
requests=${2:-50000}
sock="$dir/redis.sock"
libc=$(ldconfig -p | awk '$1 == "libc.so.6" && !p { p = $NF } END { print p }')
server_preload=${LD_PRELOAD:-$libc}
rm -f "$sock" "$dir/dump.rdb"
LD_PRELOAD=$server_preload redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
    --dir "$dir" --logfile "$dir/redis-server.log" --daemonize no &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; }
trap cleanup EXIT
export -n LD_PRELOAD
unset LD_PRELOAD
for _ in $(seq 200); do
    redis-cli -s "$sock" ping >/dev/null 2>&1 && break
    sleep 0.02
done
# SET/GET with 256-byte values over 100k random keys, list, set and hash
# traffic, pipelined; then a smaller LRANGE run (big replies).
redis-benchmark -s "$sock" -n "$requests" -r 100000 -d 256 -P 16 -q \
    -t set,get,lpush,lpop,rpush,sadd,hset,spop >"$dir/redis-bench.log" 2>&1
redis-benchmark -s "$sock" -n "$((requests / 5))" -r 100000 -d 64 -P 16 -q \
    -t lrange_100 >>"$dir/redis-bench.log" 2>&1
keys=$(redis-cli -s "$sock" dbsize)
redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1 || true
wait "$server" || true
trap - EXIT
# The key count depends on how the benchmark's clients interleave: check it,
# print a fixed line.
if [ "$keys" -gt 1000 ]; then echo "redis ok"; else echo "redis: only $keys keys"; exit 1; fi
