#!/usr/bin/env bash
# Runs every test of Atelier, installing what the tests need first:
#   - NuGet packages (dotnet restore, through `dotnet test`),
#   - npm packages of the end-to-end tests (the official Mistral SDK) and of the tokeniser
#     reference tests (tiktoken), from their package-lock.json files,
#   - Debian's python3-sentencepiece (Google's sentencepiece under /usr/bin/python3), the
#     reference of the SentencePiece tests, when /usr/bin/python3 cannot import it already,
#   - Debian's chromium (/usr/bin/chromium), the browser of the web console's tests, which
#     Playwright drives without downloading a browser of its own,
#   - Debian's postgresql (server binaries only), which the PostgreSQL catalog and cluster tests start themselves,
#   - Debian's ceph-mon, ceph-osd and radosgw: the S3 location tests start a one-node Ceph with
#     its RADOS Gateway (eng/ceph-rgw.sh) once per run and stop it at the end,
#   - Debian's yamllint, which the deployment manifests' test runs over deploy/.
# Ends with one line "N passed, N failed", counted from the TRX test results.
# Extra arguments go to `dotnet test`, e.g.  eng/test.sh --filter "Category!=Slow"
set -uo pipefail
cd "$(dirname "$0")/.."

for lock in $(git ls-files 'tests/**/package-lock.json' 2>/dev/null || find tests -name package-lock.json -not -path '*/node_modules/*'); do
  dir=$(dirname "$lock")
  echo "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed in $dir"; echo "0 passed, 1 failed"; exit 1; }
done

# The SentencePiece reference. Debian's package, for Debian's python: `python3` on PATH may be
# another interpreter (pyenv) without it, so the tests call /usr/bin/python3 by its path.
if ! /usr/bin/python3 -c 'import sentencepiece' >/dev/null 2>&1; then
  echo "installing python3-sentencepiece (the SentencePiece tests' reference)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-sentencepiece >/dev/null; } \
    || echo "could not install python3-sentencepiece: the SentencePiece reference tests will fail"
fi

# The web console's browser. Playwright's own browser download is never used (nothing outside the
# package registries can be reached): the tests point it at Debian's chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (the web console tests' browser)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; } \
    || echo "could not install chromium: the web console tests will fail"
fi

# The PostgreSQL catalog's tests start a real server of their own (initdb in a temporary directory,
# as an unprivileged user when run as root): Debian's postgresql package gives the binaries, found
# under /usr/lib/postgresql/<version>/bin whatever the version. Its own cluster is not used.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  echo "installing postgresql (the PostgreSQL catalog tests' server)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null; } \
    || echo "could not install postgresql: the PostgreSQL catalog tests will fail"
fi

# Ceph (monitor, OSD, RADOS Gateway), the real S3-compatible server the S3 location tests start
# through eng/ceph-rgw.sh, once per test run.
if ! command -v radosgw >/dev/null || ! command -v ceph-osd >/dev/null || ! command -v ceph-mon >/dev/null; then
  echo "installing ceph-mon, ceph-osd, radosgw (the S3 location tests' server)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ceph-mon ceph-osd radosgw ceph-common >/dev/null; } \
    || echo "could not install Ceph: the S3 location tests will fail"
fi

# Debian's yamllint: DeploymentManifestTests lints deploy/ (the Kubernetes manifests) with it, and
# fails rather than skips when it is missing.
if ! command -v yamllint >/dev/null; then
  echo "installing yamllint (the deployment manifests' linter)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq yamllint >/dev/null; } \
    || echo "could not install yamllint: the deployment manifests' test will fail"
fi

# Formatting check (whitespace and indentation, as .editorconfig says); a failure fails the run.
format_status=0
if ! dotnet format whitespace Atelier.slnx --verify-no-changes -v q; then
  echo "Formatting check failed: run 'dotnet format whitespace Atelier.slnx' and commit the result."
  format_status=1
fi

# Every temporary file of the run goes under one directory, removed at the end whatever happens,
# and any process started from it (an `atelier serve` of a crash test) is killed: a failed or
# killed test leaves nothing behind. What tests left there themselves is reported first.
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/atelier-test-run.XXXXXX")
cleanup() {
  pkill -KILL -f -- "$run_tmp" 2>/dev/null || true
  rm -rf -- "$run_tmp"
}
trap cleanup EXIT

results=artifacts/test-results
rm -rf "$results"

# Built first with the machine's own temporary directory (long-lived build servers keep their
# pipes there); then the tests run with the run's.
dotnet build Atelier.slnx -c Release -nologo -v q
status=$?
if [ $status -eq 0 ]; then
  # vstest kills a test host that has not exited 100 ms after its last test; a host still removing
  # its temporary directories (ProcessExit) on a loaded machine needs longer, or they are left behind.
  VSTEST_TESTHOST_SHUTDOWN_TIMEOUT=30000 TMPDIR="$run_tmp" dotnet test Atelier.slnx -c Release --no-build --logger "trx" --results-directory "$results" "$@"
  status=$?
fi

leftover_dirs=$(find "$run_tmp" -mindepth 1 -maxdepth 1 -name 'atelier-*' | wc -l)
leftover_procs=$(pgrep -f -- "$run_tmp" | wc -l)
echo "Left behind by the tests (removed now): $leftover_dirs atelier-* temporary directories, $leftover_procs processes."
if [ "$leftover_dirs" -gt 0 ]; then
  find "$run_tmp" -mindepth 1 -maxdepth 1 -name 'atelier-*' -printf '%f\n' | sed -E 's/[-.]?[0-9a-f]{32}$//' | sort | uniq -c | sort -rn | head -10
  # What a left-behind per-process root still held names the tests that created it.
  find "$run_tmp" -mindepth 2 -maxdepth 2 -path '*/atelier-tests-*' -printf '  in %h: %f\n' | sed -E "s#$run_tmp/##; s/-[0-9a-f]{32}$//" | sort | uniq -c | head -20
fi

node eng/count-trx.mjs "$results"
count_status=$?
if [ $status -eq 0 ] && [ $count_status -ne 0 ]; then status=$count_status; fi
if [ $status -eq 0 ] && [ $format_status -ne 0 ]; then status=$format_status; fi
exit $status
