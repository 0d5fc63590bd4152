# shellcheck shell=bash
# Throwaway PostgreSQL clusters for scripts/with-pg, scripts/test and scripts/dev.
# Source this file, then: pg_ensure_installed; pg_start NAME; pg_run COMMAND...
#
# Each run gets its own cluster in .pg/NAME-PID on a free port on 127.0.0.1. It is
# stopped and deleted when the script exits, including on Ctrl-C or SIGTERM.
# Env: POOL_PG_FAST=1 turns durability off (tests only).
#      POOL_USE_EXISTING_DB=1 together with DATABASE_URL uses that database.
set -euo pipefail

POOL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
PG_BIN=     # directory holding initdb, pg_ctl, postgres, createdb
PG_USER=    # who runs the server when we are root (postgres refuses to run as root)
PG_DIR=     # data directory of our cluster; empty means nothing to clean up
PG_CHILD=   # pid of the command started by pg_run

_pg_die() { echo "pg: $*" >&2; exit 1; }

_pg_use_existing() { [[ ${POOL_USE_EXISTING_DB:-} == 1 && -n ${DATABASE_URL:-} ]]; }

# Find the server binaries. Debian keeps them off PATH, one directory per major
# version under /usr/lib/postgresql, so look there first and take the newest.
_pg_find_bin() {
  local d
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then PG_BIN=$d; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
    return 0
  fi
  return 1
}

pg_ensure_installed() {
  _pg_use_existing && return 0
  if ! _pg_find_bin; then
    command -v apt-get >/dev/null ||
      _pg_die "PostgreSQL server (initdb, pg_ctl) not found and no apt-get; install it, or set DATABASE_URL and POOL_USE_EXISTING_DB=1"
    local sudo=
    if [[ $EUID -ne 0 ]]; then
      command -v sudo >/dev/null || _pg_die "PostgreSQL not found; run as root or install the 'postgresql' package"
      sudo=sudo
    fi
    echo "pg: PostgreSQL not found, installing Debian's postgresql package" >&2
    # noninteractive: the tzdata dependency would otherwise stop and ask for a time zone.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
    _pg_find_bin || _pg_die "installed postgresql but still cannot find initdb"
  fi
  # Put it first so that psql, pg_dump and so on match the server's version.
  PATH=$PG_BIN:$PATH
  export PATH
}

# Run a server command as the user that owns the cluster. As root, that is an
# unprivileged user, because postgres refuses to run as root. `cd /` stops the
# tools from warning when the caller's directory is unreadable to that user.
_pg_as() {
  if [[ $EUID -ne 0 ]]; then
    "$@"
  elif command -v runuser >/dev/null; then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    (cd / && su -s /bin/sh "$PG_USER" -c "$(printf '%q ' "$@")")
  fi
}

_pg_pick_user() {
  [[ $EUID -ne 0 ]] && return 0
  if id -u postgres >/dev/null 2>&1; then PG_USER=postgres; return 0; fi
  PG_USER=pooldev
  # A parallel run can create the user first, so check again if useradd fails.
  id -u "$PG_USER" >/dev/null 2>&1 ||
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$PG_USER" ||
    id -u "$PG_USER" >/dev/null 2>&1 || _pg_die "could not create user $PG_USER"
}

# Stop and delete clusters left behind by runs that were killed with SIGKILL:
# their postgres still runs (pg_ctl puts it in a new session).
_pg_reap_stale() {
  local d pid
  for d in "$POOL_ROOT"/.pg/*-* /tmp/pool-pg/*-*; do
    [[ -d $d ]] || continue
    pid=${d##*-}
    [[ $pid =~ ^[0-9]+$ && ! -e /proc/$pid ]] || continue
    echo "pg: removing stale cluster $d" >&2
    _pg_as "$PG_BIN/pg_ctl" stop -D "$d" -m immediate -s >/dev/null 2>&1 || true
    rm -rf "$d" || true
  done
}

_pg_cleanup() {
  [[ -n $PG_DIR ]] || return 0
  local dir=$PG_DIR
  PG_DIR=   # do this only once, even if a second signal arrives
  if [[ -f $dir/postmaster.pid ]]; then
    _pg_as "$PG_BIN/pg_ctl" stop -D "$dir" -m fast -s >/dev/null 2>&1 ||
      _pg_as "$PG_BIN/pg_ctl" stop -D "$dir" -m immediate -s >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

_pg_on_exit() {
  local rc=$?
  _pg_cleanup
  exit "$rc"
}

# True if our process group is the terminal's foreground group, which is what
# receives Ctrl-C. Fields after "(comm) ": state ppid pgrp session tty tpgid.
_pg_in_foreground() {
  local stat pgrp tpgid
  stat=$(</proc/$$/stat) || return 1
  read -r _ _ pgrp _ _ tpgid _ <<<"${stat##*) }"
  [[ $pgrp == "$tpgid" ]]
}

# On Ctrl-C or kill: pass the signal on and wait for the command, so that it can
# still use the database while it shuts down; then delete the cluster, and die of
# the same signal so that the caller (a shell loop, make, CI) sees why we stopped.
# A Ctrl-C at the terminal has already reached the command (it shares our process
# group); sending a second SIGINT could cut short its graceful shutdown.
_pg_on_signal() {
  local sig=$1
  if [[ -n $PG_CHILD ]]; then
    if [[ $sig != INT ]] || ! _pg_in_foreground; then
      kill -s "$sig" "$PG_CHILD" 2>/dev/null || true
    fi
    wait "$PG_CHILD" 2>/dev/null || true
  fi
  _pg_cleanup
  trap - EXIT "$sig"
  kill -s "$sig" "$$"
}

# pg_start NAME: start a cluster and export DATABASE_URL for database "pool".
pg_start() {
  local name=${1:?usage: pg_start NAME}
  trap _pg_on_exit EXIT
  trap '_pg_on_signal INT' INT
  trap '_pg_on_signal TERM' TERM
  trap '_pg_on_signal HUP' HUP

  if _pg_use_existing; then
    echo "pg: using existing database from DATABASE_URL" >&2
    return 0
  fi
  [[ -n $PG_BIN ]] || _pg_die "call pg_ensure_installed first"
  _pg_pick_user
  _pg_reap_stale

  PG_DIR=$POOL_ROOT/.pg/$name-$$
  mkdir -p "$PG_DIR"
  if [[ $EUID -eq 0 ]]; then
    chown "$PG_USER:" "$PG_DIR"
    # If the project lives where that user cannot go (e.g. /root), use /tmp.
    if ! _pg_as test -w "$PG_DIR"; then
      rm -rf "$PG_DIR"
      PG_DIR=/tmp/pool-pg/$name-$$
      mkdir -p "$PG_DIR"
      chown "$PG_USER:" "$PG_DIR"
    fi
  fi

  # C.UTF-8 where it exists: sorting does not depend on the machine's language.
  local locale=C locales out
  locales=$(locale -a 2>/dev/null || true)
  if grep -qix 'c\.utf-\?8' <<<"$locales"; then locale=C.UTF-8; fi
  out=$(_pg_as "$PG_BIN/initdb" -D "$PG_DIR" -A trust -U postgres --no-sync \
    -E UTF8 --locale="$locale" 2>&1) || { echo "$out" >&2; _pg_die "initdb failed"; }

  # Unix socket paths are limited to 107 bytes; we connect over TCP anyway.
  local sockdir=$PG_DIR
  (( ${#PG_DIR} < 80 )) || sockdir=
  cat >>"$PG_DIR/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
max_connections = 300
shared_buffers = 128MB
log_min_messages = warning
EOF
  # TLS with a throwaway self-signed certificate, so `sslmode=require` can be tested
  # (POOL_PG_TLS=1, set by scripts/test; benchmarks measure plain TCP as before).
  if [[ ${POOL_PG_TLS:-} == 1 ]] && command -v openssl >/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
      -keyout "$PG_DIR/server.key" -out "$PG_DIR/server.crt" >/dev/null 2>&1 &&
      chmod 600 "$PG_DIR/server.key" &&
      { [[ $EUID -ne 0 ]] || chown "$PG_USER:" "$PG_DIR/server.key" "$PG_DIR/server.crt"; } &&
      printf '%s\n' 'ssl = on' >>"$PG_DIR/postgresql.conf"
  fi
  if [[ ${POOL_PG_FAST:-} == 1 ]]; then
    # Tests do not need the data to survive a crash of the machine.
    printf '%s\n' 'fsync = off' 'synchronous_commit = off' 'full_page_writes = off' \
      >>"$PG_DIR/postgresql.conf"
  fi

  # Take a random port below Linux's ephemeral range (32768+). Another program
  # can still take it before postgres binds it, so on "in use" try another.
  local log=$PG_DIR/postgres.log port='' _
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    port=$((15000 + RANDOM % 17000))
    # Connecting succeeds only if something already listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      rm -f "$log"
      # -w waits until the server accepts connections, or fails if it exits.
      _pg_as "$PG_BIN/pg_ctl" start -D "$PG_DIR" -l "$log" -o "-p $port" -w -t 30 -s \
        >/dev/null 2>&1 && break
      grep -q 'already in use' "$log" 2>/dev/null ||
        { cat "$log" >&2 || true; _pg_die "postgres did not start"; }
    fi
    port=
  done
  [[ -n $port ]] || _pg_die "found no free port"
  "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres ||
    { cat "$log" >&2 || true; _pg_die "postgres is not ready"; }

  "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U postgres pool
  export DATABASE_URL=postgres://postgres@127.0.0.1:$port/pool
  echo "pg: $DATABASE_URL (cluster in $PG_DIR)" >&2
}

# pg_run COMMAND...: run COMMAND and return its exit status. It runs in the
# background so that `wait` can be interrupted by our signal traps (bash runs a
# trap only after a foreground command ends). Background commands of a script
# ignore SIGINT and read /dev/null; `trap -` and `<&0` undo that, so Ctrl-C and
# the terminal reach the command as usual.
pg_run() {
  local rc=0
  # CI may start us with stdin closed, and then `<&0` would fail.
  { true <&0; } 2>/dev/null || exec </dev/null
  (trap - INT QUIT; exec "$@") <&0 &
  PG_CHILD=$!
  wait "$PG_CHILD" || rc=$?
  PG_CHILD=
  return "$rc"
}
