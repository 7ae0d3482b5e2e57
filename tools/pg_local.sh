#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on a local port, for tests and benchmarks.
#
#   tools/pg_local.sh start DIR [PORT]   # prints the URL to use (postgresql://descent:...@...)
#   tools/pg_local.sh restart DIR       # a fast restart: every connection is cut
#   tools/pg_local.sh stop DIR
#
# Installs Debian's `postgresql` package when no server is found. PostgreSQL refuses to run as
# root, so as root the cluster belongs to an unprivileged system user (`descentpg`, created if
# missing). The cluster listens on 127.0.0.1 only, asks for a password (scram-sha-256) and has
# one database, `descent`, owned by the user `descent` whose password is in DIR/password.
# Where `openssl` is found it also serves TLS, with a certificate for `localhost` signed by a
# CA of its own, DIR/ca.crt.
set -euo pipefail

cmd=${1:?usage: pg_local.sh start DIR [PORT] | restart DIR | stop DIR}
dir=${2:?give the directory of the cluster}
port=${3:-55432}

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
  done
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u descentpg -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  if ! bin=$(bindir); then
    echo "installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin=$(bindir) || { echo "PostgreSQL's pg_ctl was not found after installing" >&2; exit 1; }
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    id descentpg >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin descentpg
    chown descentpg "$dir"
    # The user must reach the directory through its parents.
    p=$dir
    while [ "$p" != / ]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    printf '%s\n' "$password" > "$dir/password"
    printf '%s\n' "$password" > "$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown descentpg "$dir/pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
    rm -f "$dir/pwfile"
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir'"
      echo "max_connections = 200"
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
    } >> "$dir/data/postgresql.conf"
    fresh=1
  fi
  if [ ! -f "$dir/ca.crt" ] && command -v openssl >/dev/null; then
    # TLS, for the sslmode tests: a CA of its own (DIR/ca.crt) and a server certificate it
    # signed for the name localhost only (so that verify-full to 127.0.0.1 must fail).
    tmp=$(mktemp -d)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=descent test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > "$tmp/ext"
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
    cp "$tmp/server.crt" "$tmp/server.key" "$dir/data/"
    chmod 600 "$dir/data/server.key"
    [ "$(id -u)" = 0 ] && chown descentpg "$dir/data/server.crt" "$dir/data/server.key"
    cp "$tmp/ca.crt" "$dir/ca.crt"
    rm -rf "$tmp"
    {
      echo "ssl = on"
      echo "ssl_cert_file = 'server.crt'"
      echo "ssl_key_file = 'server.key'"
    } >> "$dir/data/postgresql.conf"
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null
  password=$(cat "$dir/password")
  if [ "${fresh:-0}" = 1 ]; then
    PGPASSWORD=$password "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "CREATE USER descent PASSWORD '$password'" -c "CREATE DATABASE descent OWNER descent" >/dev/null
  fi
  echo "postgresql://descent:$password@127.0.0.1:$port/descent"
  ;;
restart)
  bin=$(bindir)
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -m fast -w -t 60 restart >/dev/null
  ;;
stop)
  bin=$(bindir)
  [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
*)
  echo "unknown command $cmd: use start, restart or stop" >&2
  exit 2
  ;;
esac
