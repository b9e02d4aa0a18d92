#!/usr/bin/env bash
# README "A killed run resumes": a run killed after its first epoch, then rerun with other filters.
# Run by make readme (docs/readme_outputs.py) in its scratch folder.
set -eu
source "$(dirname "$0")/_show.sh"
cnnapp train-image --name kc --filters 4,8 > kc.log 2>&1 &
run=$!
until grep -q "^Epoch 2/" kc.log; do          # epoch 1 finished: its backup is on disk
    kill -0 "$run" 2>/dev/null || { cat kc.log; exit 1; }
    sleep 0.2
done
kill -9 "$run"
wait "$run" 2>/dev/null || true
show "cnnapp train-image --name kc --filters 8,16          # after a killed \`cnnapp train-image --name kc --filters 4,8\`"
