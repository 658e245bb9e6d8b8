# Sourced by the .ci/setup-*.sh scripts (not run by .ci/run's setup loop: the name does not match).
# env_set KEY VALUE: set KEY=VALUE in .ci/env, which every setup script shares, replacing only that key.
env_set() {
  local envf
  envf="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env"
  touch "$envf"
  grep -v "^$1=" "$envf" > "$envf.tmp.$$" || true
  echo "$1=$2" >> "$envf.tmp.$$"
  mv "$envf.tmp.$$" "$envf"
}
