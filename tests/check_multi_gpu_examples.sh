#!/usr/bin/env bash
# The multi-GPU examples (examples/multi-gpu/) run as written, on the CPU with Gloo and 2 processes on the tiny model:
# the SLURM script under a stand-in for srun (which starts its tasks with SLURM's variables, as srun does), and the
# torchrun script under the venv's real torchrun. Both must write the scores.json of one process, bit for bit, train
# with expert parallelism (4 of the tiny model's 8 experts per rank), and leave a merged model. Never skipped: without the venv's torchrun it fails saying so.
#   usage: tests/check_multi_gpu_examples.sh ESFT_HOST SOURCE_DIR
set -euo pipefail
host=$1 source=$2
torchrun=$source/.venv/bin/torchrun
python=$source/.venv/bin/python
if [ ! -x "$torchrun" ]; then
  echo "check_multi_gpu_examples: $torchrun is missing; run scripts/install-deps.sh" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/model" "$work/bin"
cp "$source"/tests/data/hf/qwen3_moe/model/* "$source"/examples/tiny-tokenizer/tokenizer.json \
  "$source"/examples/tiny-tokenizer/tokenizer_config.json "$work/model/"
printf 'learning_rate = 1e-4\nsteps = 3\nbatch_size = 2\nseq_length = 128\neval_steps = 0\nsave_steps = 3\n' >"$work/train.toml"

# srun's part: SLURM_NTASKS copies of the command, each with its step's SLURM_STEP_NUM_TASKS, SLURM_PROCID and
# SLURM_LOCALID; fails when one does. (The batch script itself has SLURM_PROCID=0 and SLURM_NTASKS, as under sbatch:
# its commands outside srun must run as one process.)
cat >"$work/bin/srun" <<'SRUN'
#!/usr/bin/env bash
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_STEP_NUM_TASKS=$SLURM_NTASKS SLURM_STEP_NODELIST=$SLURM_JOB_NODELIST SLURM_PROCID=$i SLURM_LOCALID=$i \
    "$@" > >(sed "s/^/[task $i] /") 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
SRUN
chmod +x "$work/bin/srun"
# A free port for the rendezvous, given as SLURM would: the job id, from which esft-host derives 20000 + id % 20000.
port=$("$python" -c 'import socket
for p in range(21000, 39000, 37):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError: pass
    finally: s.close()')

common=(ESFT_HOST="$host" MODEL="$work/model" DATA="$source/examples/tiny-task/train.jsonl" DEVICE=cpu
        TRAIN_CONFIG="$work/train.toml" TOP_P=0.5)
env "${common[@]}" OUT="$work/slurm" PATH="$work/bin:$PATH" SLURM_NTASKS=2 SLURM_PROCID=0 SLURM_LOCALID=0 \
  SLURM_JOB_NODELIST=localhost \
  SLURM_JOB_ID=$((port - 20000)) bash "$source/examples/multi-gpu/esft-8gpu.slurm" >"$work/slurm.log" 2>&1 \
  || { tail -n 30 "$work/slurm.log"; echo "check_multi_gpu_examples: the SLURM script failed" >&2; exit 1; }
grep -q "processes (slurm, gloo" "$work/slurm.log" || { cat "$work/slurm.log"; echo "no SLURM process group" >&2; exit 1; }
grep -q "each holds 4 experts of every MoE layer" "$work/slurm.log" || { cat "$work/slurm.log"; echo "no expert parallelism" >&2; exit 1; }
env "${common[@]}" OUT="$work/torchrun" NPROC=2 TORCHRUN="$torchrun" \
  bash "$source/examples/multi-gpu/torchrun-8gpu.sh" >"$work/torchrun.log" 2>&1 \
  || { tail -n 30 "$work/torchrun.log"; echo "check_multi_gpu_examples: the torchrun script failed" >&2; exit 1; }
grep -q "processes (torchrun, gloo" "$work/torchrun.log" || { cat "$work/torchrun.log"; echo "no torchrun process group" >&2; exit 1; }
grep -q "each holds 4 experts of every MoE layer" "$work/torchrun.log" || { cat "$work/torchrun.log"; echo "no expert parallelism" >&2; exit 1; }

# One process with the threads each rank had: a CPU matrix product splits its sums by the thread count, and torchrun
# gives every worker OMP_NUM_THREADS=1.
"$host" --device cpu scores --model "$work/model" --data "$source/examples/tiny-task/train.jsonl" --out "$work/one-slurm" \
  --batch-size 8 >/dev/null 2>&1
OMP_NUM_THREADS=1 "$host" --device cpu scores --model "$work/model" --data "$source/examples/tiny-task/train.jsonl" \
  --out "$work/one-torchrun" --batch-size 8 >/dev/null 2>&1
for run in slurm torchrun; do
  cmp "$work/one-$run/scores.json" "$work/$run/scores/scores.json" \
    || { echo "check_multi_gpu_examples: $run's scores.json differs from one process's" >&2; exit 1; }
  [ -f "$work/$run/merged/config.json" ] || { echo "check_multi_gpu_examples: $run left no merged model" >&2; exit 1; }
done
echo "check_multi_gpu_examples: the SLURM and torchrun examples ran with 2 processes; scores.json as one process's; expert-parallel training"
