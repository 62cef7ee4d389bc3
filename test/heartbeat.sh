#!/usr/bin/env bash
# Runs a command and passes its output on as it comes; when the command has printed nothing for 30 s (a compile,
# a long test), says that it is still at work, so that a run never sits silent. Exits with the command's status.
start=$SECONDS
"$@" 2>&1 | while :; do
  if IFS= read -r -t "${HEARTBEAT:-30}" line; then
    printf '%s\n' "$line"
  elif [ $? -gt 128 ]; then
    printf '%s... still at work, %dm%02ds in\n' "$line" $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60))
  else
    [ -z "$line" ] || printf '%s' "$line"
    break
  fi
done
exit "${PIPESTATUS[0]}"
