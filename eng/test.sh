#!/usr/bin/env bash
# Runs every test of Atelier, installing what the tests need first:
#   - NuGet packages (dotnet restore, through `dotnet test`),
#   - npm packages of the end-to-end tests (the official Mistral SDK) and of the tokeniser
#     reference tests (tiktoken), from their package-lock.json files.
# Ends with one line "N passed, N failed", counted from the TRX test results.
# Extra arguments go to `dotnet test`, e.g.  eng/test.sh --filter "Category!=Slow"
set -uo pipefail
cd "$(dirname "$0")/.."

for lock in $(git ls-files 'tests/**/package-lock.json' 2>/dev/null || find tests -name package-lock.json -not -path '*/node_modules/*'); do
  dir=$(dirname "$lock")
  echo "npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm ci failed in $dir"; echo "0 passed, 1 failed"; exit 1; }
done

# Formatting check (whitespace and indentation, as .editorconfig says); a failure fails the run.
format_status=0
if ! dotnet format whitespace Atelier.slnx --verify-no-changes -v q; then
  echo "Formatting check failed: run 'dotnet format whitespace Atelier.slnx' and commit the result."
  format_status=1
fi

results=artifacts/test-results
rm -rf "$results"
dotnet test Atelier.slnx -c Release --logger "trx" --results-directory "$results" "$@"
status=$?

node eng/count-trx.mjs "$results"
count_status=$?
if [ $status -eq 0 ] && [ $count_status -ne 0 ]; then status=$count_status; fi
if [ $status -eq 0 ] && [ $format_status -ne 0 ]; then status=$format_status; fi
exit $status
