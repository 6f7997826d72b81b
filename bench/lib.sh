# Shared by the bench/*/run.sh scripts: source it from the repository root.
#   BIN      cache directory for peer tools installed from the Go module proxy
#   work     a temporary directory, removed on exit
#   rk       the regkeeper binary built from this checkout
#   start_fleet ARGS...  starts bench/fleet (the embedded registry with a
#            generated fleet) in the background and sets $host
#   secs CMD...          runs CMD with its stdout discarded, prints wall seconds
BIN=${XDG_CACHE_HOME:-$HOME/.cache}/regkeeper/bin
mkdir -p "$BIN"
work=$(mktemp -d)
fleet_pid=
trap '[ -n "$fleet_pid" ] && kill "$fleet_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
go build -o "$work/regkeeper" ./cmd/regkeeper
go build -o "$work/fleet" ./bench/fleet
rk=$work/regkeeper

start_fleet() {
  "$work/fleet" --dir "$work/reg" "$@" >"$work/fleet.out" 2>"$work/fleet.err" &
  fleet_pid=$!
  for _ in $(seq 1200); do grep -q '^host' "$work/fleet.out" 2>/dev/null && break; sleep 0.5; done
  host=$(awk '/^host/{print $2}' "$work/fleet.out")
  [ -n "$host" ] || { cat "$work/fleet.err"; exit 1; }
  cat "$work/fleet.err"
}

secs() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}
