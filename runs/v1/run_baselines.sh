#!/bin/bash
# UCE and SLD (issue 21) on the shipped world-v1 toy-sd, full toy suite, one thread each step.
set -e
export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1
E=.venv/bin/erasekit
for c in star striped; do
  for m in uce sld; do
    [ -f runs/v1/$m-$c.json ] && continue
    start=$(date +%s.%N)
    $E erase --model toy-sd --method $m --concept $c --out runs/v1/$m-$c --overwrite
    end=$(date +%s.%N)
    echo "$m $c erase seconds $(echo "$end - $start" | bc)" >> runs/v1/times.txt
    $E evaluate --model toy-sd --edit runs/v1/$m-$c --concept $c --json runs/v1/$m-$c.json.tmp
    mv runs/v1/$m-$c.json.tmp runs/v1/$m-$c.json
  done
done
