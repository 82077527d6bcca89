#!/bin/sh
# Entry point of the eldercare image: Docker (or compose) secrets become settings.
# A secret mounted as /run/secrets/ELDERCARE_<NAME> (compose: `target: ELDERCARE_<NAME>`) is exported
# as the variable of that name, so passwords and keys need not sit in the environment definition.
# A variable set in the environment wins over a file of the same name. SECRETS_DIR: tests only.
set -eu
dir="${SECRETS_DIR:-/run/secrets}"
if [ -d "$dir" ]; then
  for f in "$dir"/ELDERCARE_*; do
    [ -f "$f" ] || continue
    name=${f##*/}
    case "$name" in *[!A-Z0-9_]*) continue ;; esac  # not a variable name
    if eval "[ -z \"\${$name+set}\" ]"; then
      value=$(cat "$f")  # drops trailing newlines, as `echo pw > file` leaves one
      export "$name=$value"
    fi
  done
fi
exec "$@"
