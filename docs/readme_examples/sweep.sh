#!/usr/bin/env bash
# README "What a sweep writes": a grid spec on the demo sentences, 1 epoch, a tiny model; the trials'
# lines left out, the stage's table and the last lines kept. Run by make readme in its scratch folder.
set -eu
source "$(dirname "$0")/_show.sh"
echo '{"method": "grid", "params": {"region_sizes": ["2", "2,3"], "dropout": [0.0, 0.5]}}' > space.json
show "cat space.json"
command="cnnapp sweep text --spec space.json --epochs 1 --feature-maps 4 --embedding-dim 8 --name s1"
printf '$ %s\n' "$command"
$command > s1.log 2>&1 || { cat s1.log; exit 1; }
echo "..."
awk '/^## Stage/ {on = 1} on && /^\|/ {table = 1} on && table && /^$/ {exit} on' s1.log   # the stage's table
echo "..."
tail -n 4 s1.log
