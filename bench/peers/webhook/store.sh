#!/bin/sh
# The `webhook` daemon's command in scenario 6 (bench/scenarios/receive.sh): stores one
# webhook whose body HMAC the daemon has checked (hooks.json beside this file).
#   sh store.sh STORE_DIR SESSION_ID    (the raw body in the file named by $WEBHOOK_BODY_FILE)
# Writes the raw body to STORE_DIR/SESSION_ID.json, created exclusively (so a session is
# stored once: a second copy is a duplicate) and fsync'ed before the script exits, and
# prints the answer the daemon returns with its 200 (the shape of `vocohook receive`'s).
# Exit 1 (the daemon answers 500, the sender retries) when the session_id is not an id or
# the write fails. dash: one process (dd) besides the shell.
umask 077
dir=$1
sid=$2
case $sid in
'' | *[!A-Za-z0-9_-]*)
    echo '{"ok":false,"error":"invalid_payload"}'
    exit 1
    ;;
esac
if [ "${#sid}" -gt 64 ]; then
    echo '{"ok":false,"error":"invalid_payload"}'
    exit 1
fi
if dd if="$WEBHOOK_BODY_FILE" of="$dir/$sid.json" conv=excl,fsync status=none 2>/dev/null; then
    dup=false
elif [ -e "$dir/$sid.json" ]; then
    dup=true
else
    echo '{"ok":false,"error":"internal_error"}'
    exit 1
fi
printf '{"ok":true,"session_id":"%s","duplicate":%s}\n' "$sid" "$dup"
