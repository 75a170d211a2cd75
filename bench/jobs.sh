#!/usr/bin/env bash
# A fine-tuning job end to end through a real `atelier serve`: import a tiny base model, upload
# chat data, run a job, and report from its own events the training stall per checkpoint as a
# share of the mean step time (goal < 5%), the persist time, and how many checkpoint bytes were
# deduplicated. The step time is the peer: it is measured in the same run.
# Usage: bench/jobs.sh [steps] [seq_len]   (default 200 steps of 256 tokens)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-200}
seq_len=${2:-256}
work=${BENCH_DIR:-$PWD/artifacts/bench-jobs}
port=${BENCH_PORT:-18183}
rm -rf "$work"; mkdir -p "$work/data"

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build (Release)"
[ "${NO_BUILD:-0}" = 1 ] || dotnet build src/Atelier.Cli -c Release -v q -nologo | tail -1
atelier="dotnet src/Atelier.Cli/bin/Release/net10.0/atelier.dll"

$atelier models init-tiny "$work/tiny-base" --seed 1 > /dev/null
python3 - "$work/train.jsonl" <<'PY'
import json, sys
words = ["apple", "river", "stone", "cloud", "ember", "maple", "frost", "amber", "coral", "delta", "lumen", "orbit"]
with open(sys.argv[1], "w") as f:
    for i in range(2000):
        w = words[i % len(words)]
        f.write(json.dumps({"messages": [{"role": "user", "content": f"Repeat after me: {w} {i} and {words[(i * 7) % 12]}."}, {"role": "assistant", "content": f"{w} {i} and {words[(i * 7) % 12]}."}]}) + "\n")
PY

$atelier serve --data "$work/data" --port "$port" > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
key=$(cat "$work/data/admin.key")
export ATELIER_URL="http://127.0.0.1:$port" ATELIER_API_KEY="$key"

$atelier models import "$work/tiny-base" --name tiny-base > /dev/null
file=$($atelier files upload "$work/train.jsonl" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
job=$($atelier jobs create --model tiny-base --train "$file" --steps "$steps" --seq-len "$seq_len" --learning-rate 0.001 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "== job $job: $steps steps of $seq_len tokens"
for _ in $(seq 1 3600); do
  status=$(curl -sf -H "Authorization: Bearer $key" "$ATELIER_URL/v1/fine_tuning/jobs/$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
  case "$status" in SUCCESS|FAILED|FAILED_VALIDATION|CANCELLED) break;; esac
  sleep 0.5
done
echo "status: $status"
curl -sf -H "Authorization: Bearer $key" "$ATELIER_URL/v1/fine_tuning/jobs/$job" > "$work/job.json"
python3 - "$work/job.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))
events = job["events"]
running = next(e["created_at"] for e in events if e["name"] == "status-updated" and e["data"]["status"] == "RUNNING")
success = next(e["created_at"] for e in events if e["name"] == "status-updated" and e["data"]["status"] == "SUCCESS")
ckpts = [e["data"] for e in events if e["name"] == "checkpoint"]
steps = job["hyperparameters"]["training_steps"]
# Event times are whole seconds: the step time is the mean over the whole run.
step_ms = (success - running) * 1000.0 / steps
stall = [c["stall_ms"] for c in ckpts]
persist = [c["persist_ms"] for c in ckpts]
written = sum(c["bytes_written"] for c in ckpts)
reused = sum(c["bytes_reused"] for c in ckpts)
losses = [c["metrics"]["train_loss"] for c in sorted(job["checkpoints"], key=lambda c: c["step_number"])]
print(f"checkpoints: {len(ckpts)}, every {steps // max(1, len(ckpts))} steps")
print(f"mean step time (RUNNING to SUCCESS / steps): {step_ms:.1f} ms")
print(f"stall per checkpoint: mean {sum(stall)/len(stall):.3f} ms, max {max(stall):.3f} ms = {100*sum(stall)/len(stall)/step_ms:.2f}% of a step (goal < 5%)")
print(f"persist per checkpoint (in the background): mean {sum(persist)/len(persist):.1f} ms")
print(f"checkpoint bytes written {written}, reused {reused} ({100*reused/max(1,written+reused):.1f}% deduplicated)")
print(f"train loss: first {losses[0]:.4f}, last {losses[-1]:.4f}")
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
