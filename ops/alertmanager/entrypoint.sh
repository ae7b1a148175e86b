#!/bin/sh
# Renders alertmanager.yml.tmpl with the receivers' settings from the
# environment, then runs Alertmanager with it. Alertmanager has no variable
# expansion of its own, and the SMTP password and the webhook URL (which often
# carries a token) come from .env, never from the repository.
#
#   entrypoint.sh TEMPLATE OUTPUT [alertmanager arguments...]
#
# The rendered file goes to a tmpfs (compose mounts /tmp as one), readable by
# the Alertmanager user only. A missing value, a value with a line break, or a
# placeholder copied from .env.example stops the start with a clear message.
set -eu

template=$1
output=$2
shift 2

required="NOTIFY_SMTP_HOST NOTIFY_SMTP_PORT NOTIFY_SMTP_FROM NOTIFY_SMTP_USER
NOTIFY_SMTP_PASSWORD LAPOR_ALERT_EMAIL_TO LAPOR_ALERT_WEBHOOK_URL"
for name in $required; do
  eval "value=\${$name-}"
  case $value in
    '') echo "alertmanager: $name is not set (see .env.example)" >&2; exit 64 ;;
    change-me*) echo "alertmanager: $name is still the .env.example placeholder" >&2; exit 64 ;;
  esac
  if [ "$(printf '%s' "$value" | wc -l)" -ne 0 ]; then
    echo "alertmanager: $name contains a line break" >&2
    exit 64
  fi
done
case ${NOTIFY_SMTP_STARTTLS:-true} in
  true | True | TRUE | 1 | yes) NOTIFY_SMTP_STARTTLS=true ;;
  false | False | FALSE | 0 | no) NOTIFY_SMTP_STARTTLS=false ;;
  *) echo "alertmanager: NOTIFY_SMTP_STARTTLS must be true or false" >&2; exit 64 ;;
esac
export NOTIFY_SMTP_STARTTLS

umask 077
# Each ${...} placeholder becomes the variable's value with ' doubled (the escape inside a
# single-quoted YAML string); index/substr rather than gsub, whose replacement
# text treats & and \ specially.
awk '
  {
    line = $0
    out = ""
    while (match(line, /\$\{[A-Z_][A-Z0-9_]*\}/)) {
      name = substr(line, RSTART + 2, RLENGTH - 3)
      value = ENVIRON[name]
      escaped = ""
      while ((i = index(value, "\047")) > 0) {
        escaped = escaped substr(value, 1, i) "\047"
        value = substr(value, i + 1)
      }
      out = out substr(line, 1, RSTART - 1) escaped value
      line = substr(line, RSTART + RLENGTH)
    }
    print out line
  }
' "$template" > "$output.new"
mv "$output.new" "$output"

exec "${ALERTMANAGER:-/bin/alertmanager}" --config.file="$output" "$@"
