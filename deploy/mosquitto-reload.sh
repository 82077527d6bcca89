#!/bin/sh
# Runs Mosquitto in the broker's container and reloads it when the platform changes the accounts.
#
# The platform (another container) writes `passwd`, `acl` and `reload.stamp` into a volume shared
# with this one (settings ELDERCARE_BROKER_PASSWORD_FILE, _ACL_FILE, _RELOAD_STAMP_FILE; see
# docs/operations.md "Broker accounts"). This script, run as root here:
#   1. copies passwd and acl into Mosquitto's own directory, owned by the mosquitto user, mode 0600
#      (the shared files belong to the platform's uid, and Mosquitto wants files it owns);
#   2. starts mosquitto in the background;
#   3. every RELOAD_POLL_S seconds reads the stamp; when it changed, copies the files again and sends
#      mosquitto SIGHUP, on which Mosquitto 2 re-reads password_file and acl_file and disconnects
#      clients whose account is gone or whose password changed.
# Until the platform has written the files, empty ones are installed: nobody can connect yet.
# SIGTERM/SIGINT are passed on to mosquitto (it saves its persistence file and exits).
#
# Environment (the defaults fit the eclipse-mosquitto:2 image):
#   BROKER_AUTH_SRC  the shared volume, may be mounted read-only   /eldercare/broker
#   BROKER_AUTH_DIR  where mosquitto.conf's password_file/acl_file are   /mosquitto/auth
#   MOSQUITTO_CONF   /mosquitto/config/mosquitto.conf
#   MOSQUITTO        the broker binary                              mosquitto
#   MOSQUITTO_USER   owner of the installed copies                  mosquitto
#   RELOAD_POLL_S    seconds between two looks at the stamp         1
set -u
src=${BROKER_AUTH_SRC:-/eldercare/broker}
dst=${BROKER_AUTH_DIR:-/mosquitto/auth}
conf=${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}
exe=${MOSQUITTO:-mosquitto}
owner=${MOSQUITTO_USER:-mosquitto}
poll=${RELOAD_POLL_S:-1}

say() { echo "mosquitto-reload: $*" >&2; }

stamp() { cat "$src/reload.stamp" 2>/dev/null || true; }

install_files() {
  mkdir -p "$dst" || return 1
  for name in passwd acl; do
    tmp="$dst/.$name.new"
    if [ -f "$src/$name" ]; then
      cp "$src/$name" "$tmp" || return 1
    else
      : >"$tmp"
    fi
    chown "$owner" "$tmp" 2>/dev/null || true  # not root (tests): the copy stays ours
    chmod 0600 "$tmp"
    mv -f "$tmp" "$dst/$name" || return 1
  done
}

install_files || { say "cannot install the account files into $dst"; exit 1; }
last=$(stamp)
"$exe" -c "$conf" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
say "mosquitto pid $pid; watching $src/reload.stamp every ${poll}s"

while kill -0 "$pid" 2>/dev/null; do
  sleep "$poll" &
  wait $! || true  # a signal ends the sleep at once; the trap has passed it on
  now=$(stamp)
  if [ "$now" != "$last" ]; then
    if install_files; then
      last=$now
      kill -HUP "$pid" 2>/dev/null && say "accounts changed ($now): SIGHUP sent"
    else
      say "cannot install the account files into $dst; retrying"
    fi
  fi
done
wait "$pid"
