#!/usr/bin/env bash
# A throw-away PostgreSQL cluster on 127.0.0.1 for tests and benchmarks.
#   scripts/pg-test-server.sh start DIR   initdb in DIR, start on a free port,
#                                         print the URL (trust auth, local only);
#                                         with openssl, TLS on too: a throw-away
#                                         CA in DIR/ca.pem signs the server's
#                                         certificate for 127.0.0.1
#   scripts/pg-test-server.sh stop DIR    stop it by the PID in its pid file
# Runs the server as the `postgres` user when started as root. Set
# VX_PG_FAST=1 for fsync=off (tests: nothing needs to survive the machine).
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?directory}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case $cmd in
start)
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log"
  extra=()
  [ "${VX_PG_FAST:-0}" = 1 ] && extra=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
  if command -v openssl >/dev/null 2>&1; then
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=vx test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req "${ec[@]}" -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 2 \
      -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
    chmod 600 "$dir/server.key"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/server.key" "$dir/server.crt"
    extra+=(-c ssl=on -c ssl_cert_file="$dir/server.crt" -c ssl_key_file="$dir/server.key")
  fi
  for port in $(seq 54329 54349); do
    if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
         -o "-c listen_addresses=127.0.0.1 -p $port -k $dir ${extra[*]}" start >/dev/null 2>&1; then
      echo "postgres://postgres@127.0.0.1:$port/postgres"
      exit 0
    fi
  done
  echo "could not start PostgreSQL (see $dir/server.log)" >&2
  exit 1
  ;;
stop)
  pidfile="$dir/data/postmaster.pid"
  [ -f "$pidfile" ] || exit 0
  pid=$(head -1 "$pidfile")
  kill -INT "$pid" 2>/dev/null || exit 0   # fast shutdown
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  ;;
*)
  echo "usage: $0 start|stop DIR" >&2
  exit 2
  ;;
esac
