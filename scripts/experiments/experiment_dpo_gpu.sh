#!/usr/bin/env bash
# The DPO sweep and the controlled experiment (scripts/experiments/experiment_dpo.py) on the GPU machine, in one call:
# seeds 0-2 on its CPU (2 threads a process, as on the CI machine) and on its GPU, side by side.
#   run(command="bash scripts/experiments/experiment_dpo_gpu.sh", carry=[".whl"])   # from the repository root
set -uo pipefail
[ -n "${GPU_WORK:-}" ] || exec bash "$(dirname "$0")/../gpu.sh" bash "$(realpath "$0")" "$@"  # the common preamble first
WORK=$GPU_WORK/dpo; SEEDS=${SEEDS:-"0 1 2"}; LIMIT=${LIMIT:-480}  # scripts/gpu.sh removes $GPU_WORK (and the cache in it) on exit
mkdir -p "$WORK"
python3 -c "from scripts.experiments.experiment_dpo import SMALL_SHAPE; from dharma_train.models.tiny import tiny_model_dir; tiny_model_dir(); tiny_model_dir(shape=SMALL_SHAPE)"
start=$(date +%s)
job() {  # job NAME THREADS ARGS...: one experiment process, its log kept
  local name=$1 threads=$2; shift 2
  OMP_NUM_THREADS=$threads timeout $((LIMIT - ($(date +%s) - start))) python3 -m scripts.experiments.experiment_dpo "$@" \
    > "$WORK/$name.log" 2>&1 || echo "job $name exited $?"
}
REST1="lr3e-5 sft2 ipo sigmoid_norm"; REST2="ld_alpha0.5 beta0.5 lora loops_only"
for s in $SEEDS; do
  for d in cpu cuda; do
    t=$([ $d = cpu ] && echo 2 || echo 1)
    ( job sweep-$d-$s $t sweep --seed $s --device $d --work $WORK/sweep-$d-$s --only recipe &&
      { job sweep-$d-$s-a $t sweep --seed $s --device $d --work $WORK/sweep-$d-$s --only $REST1 &
        job sweep-$d-$s-b $t sweep --seed $s --device $d --work $WORK/sweep-$d-$s --only $REST2; wait; } ) &
  done
  job control-cpu-$s 2 control --seed $s --device cpu --shape tiny --work $WORK/control-cpu-tiny-$s &
  job control-cuda-$s 1 control --seed $s --device cuda --shape small --work $WORK/control-cuda-small-$s &
done
while [ -n "$(jobs -r)" ]; do  # partial tables every 30 s, so a call cut short still returns them
  sleep 30; python3 -m scripts.experiments.experiment_dpo tables --work $WORK --out $OUT > /dev/null 2>&1
done
wait
echo "experiment wall time: $(( $(date +%s) - start )) s"
python3 -m scripts.experiments.experiment_dpo tables --work $WORK --out $OUT
tail -n 3 $WORK/*.log | grep -B2 -i "error\|exited" | head -40
tar -czf $OUT/work.tar.gz -C $WORK $(cd $WORK && ls -d */*.json */ladder/summary.json 2>/dev/null) $(cd $WORK && ls *.log)
