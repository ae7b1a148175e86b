#!/bin/sh
# Renders the config templates with the KANNEL_* variables onto /tmp (the root
# filesystem is read-only), refuses a missing or placeholder value, then runs
# bearerbox and smsbox; the container stops when either of them stops.
set -eu
umask 077
vars=$(grep -oh '\${KANNEL_[A-Z_]*}' /etc/lapor-kannel/kannel.conf /etc/lapor-kannel/smsc-smpp.conf | sort -u)
for ref in $vars; do
  name=${ref#??}; name=${name%?}
  # The operator may give no system-type; every other value is required.
  [ "$name" = KANNEL_SMPP_SYSTEM_TYPE ] && continue
  eval "value=\${$name-}"
  case "$value" in
    "") echo "kannel: $name is not set (see .env.example)" >&2; exit 1 ;;
    *change-me*) echo "kannel: $name is still a placeholder from .env.example" >&2; exit 1 ;;
  esac
done
mkdir -p /tmp/kannel "$KANNEL_STORE_DIR" "$KANNEL_LOG_DIR"
envsubst "$vars" < /etc/lapor-kannel/smsc-smpp.conf > /tmp/kannel/smsc.conf
envsubst "$vars" < /etc/lapor-kannel/kannel.conf > /tmp/kannel/kannel.conf
# Without -v both boxes also write every line, debug included, to the console
# (the container's log), and debug lines name citizens' numbers: the console
# gets the levels of their log files.
bearerbox -v 1 /tmp/kannel/kannel.conf &
bearerbox_pid=$!
# smsbox gives up when bearerbox does not answer yet.
until curl -s -o /dev/null "http://127.0.0.1:$KANNEL_ADMIN_PORT/status.txt"; do sleep 1; done
smsbox -v 2 /tmp/kannel/kannel.conf &
smsbox_pid=$!
trap 'kill -TERM $smsbox_pid $bearerbox_pid 2>/dev/null' TERM INT
while kill -0 $bearerbox_pid 2>/dev/null && kill -0 $smsbox_pid 2>/dev/null; do sleep 2; done
kill -TERM $smsbox_pid $bearerbox_pid 2>/dev/null || true
wait
exit 1
