#!/usr/bin/env bash
# Debian packages the test suite uses: text corpora (fortunes, wordnet-base).
# Installs only what is missing; without root or apt it says so and the tests that need them skip.
set -u
need=()
[ -d /usr/share/games/fortunes ] || need+=(fortunes)
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
[ -x /usr/bin/chromium ] || need+=(chromium)  # headless browser for tests/test_browser.py
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null \
  || need+=(postgresql)  # server for tests/test_tune_postgres.py (lstmlab tune --storage postgresql://...)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "system-deps: cannot install ${need[*]} (need root and apt-get); tests using them will skip" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
  || echo "system-deps: apt-get install ${need[*]} failed; tests using them will skip" >&2
exit 0
