# Shared by the walk-through scripts that put each participant on its own "host" (a Linux
# network namespace): sourced after WORK (the work folder, with bin/fx) and TAG (the suffix of
# the namespace names) are set. FAILED collects the checks' outcome; PIDS the background jobs.
# shellcheck shell=bash

say() { printf '\n== %s\n' "$*"; }
check() {  # check NAME CONDITION...
  local name="$1"; shift
  if "$@"; then echo "PASS  $name"; else echo "FAIL  $name"; FAILED=1; fi
}
# on NS DIR COMMAND: run a shell command line on a host, in its folder, with `fx` on the PATH
on() {
  local ns="$1" dir="$2"; shift 2
  printf '[%s] $ %s\n' "${ns%"$TAG"}" "$*"
  ip netns exec "$ns" env PATH="$WORK/bin:$PATH" sh -c "cd '$dir' && $*"
}
# bg_on NS DIR LOG COMMAND: the same in the background; BG_PID is the command's own pid
bg_on() {
  local ns="$1" dir="$2" log="$3"; shift 3
  printf '[%s] $ %s &\n' "${ns%"$TAG"}" "$*"
  ip netns exec "$ns" env PATH="$WORK/bin:$PATH" sh -c "cd '$dir' && exec $*" > "$log" 2>&1 &
  BG_PID=$!
  PIDS+=("$BG_PID")
}
wait_for_line() {  # wait_for_line FILE REGEX SECONDS
  local end=$(( $(date +%s) + $3 ))
  until grep -qE "$2" "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}
# make_fx_wrapper ROOT PY: $WORK/bin/fx runs this checkout's fx with that python
make_fx_wrapper() {
  mkdir -p "$WORK/bin"
  printf '#!/bin/sh\nPYTHONPATH=%s exec %s -m openfl_like.cli.main "$@"\n' "$1" "$2" \
    > "$WORK/bin/fx"
  chmod +x "$WORK/bin/fx"
}
