#!/bin/bash
# UCE and SLD (issue 21) on the shipped world-v1 toy models, full toy suite, one thread each step.
# toy-sd: runs/v1/<method>-<concept>.json; toy-flux: runs/v1/flux-uce-<concept>.json (SLD refuses FLUX: no CFG).
set -e
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
E=.venv/bin/erasekit
for model in toy-sd toy-flux; do
  prefix=""; methods="uce sld"
  [ $model = toy-flux ] && prefix="flux-" && methods="uce"
  for c in star striped; do
    for m in $methods; do
      name=$prefix$m-$c
      [ -f runs/v1/$name.json ] && continue
      start=$(date +%s.%N)
      $E erase --model $model --method $m --concept $c --out runs/v1/$name --overwrite
      end=$(date +%s.%N)
      echo "$model $m $c erase seconds $(echo "$end - $start" | bc)" >> runs/v1/times.txt
      $E evaluate --model $model --edit runs/v1/$name --concept $c --json runs/v1/$name.json.tmp
      mv runs/v1/$name.json.tmp runs/v1/$name.json
    done
  done
done
