#!/bin/sh
# Logical backup and restore of the eldercare database, TimescaleDB or plain PostgreSQL
# (docs/operations.md, "Backup and restore").
#
#   deploy/db-backup.sh backup  SOURCE_URL FILE     pg_dump -Fc of the whole database
#   deploy/db-backup.sh restore FILE TARGET_URL     into an EMPTY database on a server with the
#                                                   same TimescaleDB version preloaded
#   deploy/db-backup.sh check   SOURCE_URL TARGET_URL   backup + restore + compare: row counts of
#                                                   every table and hypertable, the aggregate, the
#                                                   policies; exits 1 on any difference (compressed
#                                                   chunks are shown, not compared: the restored
#                                                   server's policies start at once)
#
# TimescaleDB needs its restore mode around pg_restore (timescaledb_pre_restore() stops the
# background jobs and lets the catalogue be loaded as data; timescaledb_post_restore() turns them
# on again), and the extension in the target must be the version the dump was taken with. A plain
# PostgreSQL database is restored with pg_restore alone. The pg_dump/pg_restore used must be of the
# server's major version (PG_BIN, default: the ones on PATH).
set -eu
umask 077  # a dump holds residents' data and every password hash: readable by its owner only
bin=${PG_BIN:+$PG_BIN/}

psql_q() { "${bin}psql" -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

is_timescale() { [ "$(psql_q "$1" "SELECT value FROM meta WHERE key = 'timescale'")" = "true" ]; }

backup() {
    # hypertable chunks live in _timescaledb_internal; pg_dump warns about circular foreign keys in
    # the catalogue, which the restore mode handles: the warnings are expected. pg_dump's own exit
    # status decides: one that failed half-way (disk full) leaves a file that is no backup.
    # The dump is written beside the target and renamed over it only when complete: a backup that
    # fails or is stopped (Ctrl-C, SIGTERM from a timer's timeout) leaves no half file that looks
    # like a backup, and the previous backup under that name stays as it was.
    err=$(mktemp)
    part=$(mktemp "$(dirname -- "$2")/.$(basename -- "$2").partial.XXXXXX" 2>/dev/null) || {
        rm -f "$err"
        echo "backup: cannot write in $(dirname -- "$2"): no backup written" >&2
        exit 1
    }
    trap 'rm -f "$part" "$err"; echo "backup: stopped: no backup written" >&2; exit 1' INT TERM HUP
    status=0
    "${bin}pg_dump" -Fc -f "$part" -d "$1" 2>"$err" || status=$?
    grep -v "circular foreign-key constraints\|hypertable\|chunk\|consider using a full dump" "$err" >&2 || true
    rm -f "$err"
    if [ "$status" != 0 ]; then
        rm -f "$part"
        echo "backup: pg_dump failed (exit $status): no backup written" >&2
        exit 1
    fi
    [ -s "$part" ] || { rm -f "$part"; echo "backup: the dump is empty: no backup written" >&2; exit 1; }
    mv -f "$part" "$2"
    trap - INT TERM HUP
    echo "backup: $(wc -c <"$2") bytes in $2"
}

restore() {
    file=$1 url=$2
    n=$(psql_q "$url" "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
    [ "$n" = 0 ] || { echo "restore: the target database is not empty ($n relations)" >&2; exit 1; }
    if "${bin}pg_restore" -l "$file" | grep -q "EXTENSION - timescaledb"; then
        psql_q "$url" "CREATE EXTENSION IF NOT EXISTS timescaledb"
        psql_q "$url" "SELECT timescaledb_pre_restore()" >/dev/null
        # --no-owner: the target may use another role; exit status checked after post_restore
        status=0
        "${bin}pg_restore" --no-owner -d "$url" "$file" || status=$?
        psql_q "$url" "SELECT timescaledb_post_restore()" >/dev/null
        [ "$status" = 0 ] || { echo "restore: pg_restore failed ($status)" >&2; exit "$status"; }
    else
        "${bin}pg_restore" --no-owner --exit-on-error -d "$url" "$file"
    fi
    echo "restore: done into $url"
}

# One line per table: name and row count; and what the extension keeps about the data.
fingerprint() {
    url=$1
    for t in $(psql_q "$url" "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace
                             AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname"); do
        echo "$t $(psql_q "$url" "SELECT count(*) FROM \"$t\"")"
    done
    echo "activity_hourly $(psql_q "$url" "SELECT count(*) || ' ' || coalesce(sum(n), 0) FROM activity_hourly")"
    echo "alembic $(psql_q "$url" "SELECT version_num FROM alembic_version")"
    if is_timescale "$url"; then
        psql_q "$url" "SELECT 'job ' || proc_name || ' ' || hypertable_name || ' ' || config::text
                       FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1"
    fi
}

check() {
    src=$1 dst=$2
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    backup "$src" "$tmp/db.dump"
    restore "$tmp/db.dump" "$dst"
    fingerprint "$src" >"$tmp/src.txt"
    fingerprint "$dst" | sed 's/"hypertable_id": [0-9]*/"hypertable_id": N/; s/"mat_hypertable_id": [0-9]*/"mat_hypertable_id": N/' >"$tmp/dst.txt"
    sed -i 's/"hypertable_id": [0-9]*/"hypertable_id": N/; s/"mat_hypertable_id": [0-9]*/"mat_hypertable_id": N/' "$tmp/src.txt"
    if diff -u "$tmp/src.txt" "$tmp/dst.txt"; then
        echo "check: restored copy matches ($(wc -l <"$tmp/src.txt") facts compared)"
        if is_timescale "$dst"; then  # not compared: the policies may compress more meanwhile
            q="SELECT count(*) FILTER (WHERE is_compressed) || ' of ' || count(*) FROM timescaledb_information.chunks"
            echo "check: compressed chunks: source $(psql_q "$src" "$q"), restored $(psql_q "$dst" "$q")"
        fi
    else
        echo "check: the restored copy differs" >&2
        exit 1
    fi
}

case "${1:-}" in
backup) [ $# = 3 ] || { echo "usage: $0 backup SOURCE_URL FILE" >&2; exit 2; }; backup "$2" "$3" ;;
restore) [ $# = 3 ] || { echo "usage: $0 restore FILE TARGET_URL" >&2; exit 2; }; restore "$2" "$3" ;;
check) [ $# = 3 ] || { echo "usage: $0 check SOURCE_URL TARGET_URL" >&2; exit 2; }; check "$2" "$3" ;;
*) echo "usage: $0 backup SOURCE_URL FILE | restore FILE TARGET_URL | check SOURCE_URL TARGET_URL" >&2; exit 2 ;;
esac
