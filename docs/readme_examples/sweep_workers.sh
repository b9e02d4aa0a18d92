#!/usr/bin/env bash
# README "Sweeps on several processes": a chief and two workers on this machine (the demo sentences,
# 1 epoch, a tiny model); of what they print, the processes', stages' and trials' lines. Run by make readme.
set -eu
command="cnnapp sweep text --stages region,maps --region-range 1-2 --max-trials 2 --workers 2 --name d2 --epochs 1 --embedding-dim 8"
printf '$ %s   # abridged\n' "$command"
$command > d2.log 2>&1 || { cat d2.log; exit 1; }
grep -E '^\[sweep\] |^\[(chief|worker [0-9]+)\] (stage|trial) ' d2.log
