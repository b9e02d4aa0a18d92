#!/usr/bin/env bash
# README "explain": the explain signature of the demo's digits export, as saved_model_cli shows it, each
# tensor's dtype/shape/name lines on one line, two to a row. Run by make readme in its scratch folder.
set -eu
command="saved_model_cli show --dir saved_models/digits/1 --tag_set serve --signature_def explain"
printf '$ %s   # condensed\n' "$command"
$command 2>/dev/null | python -c '
import re, sys
tensors, name = [], None
for line in sys.stdin:
    if m := re.match(r"\s+(inputs|outputs)\[(.*)\] tensor_info:", line):
        name = f"{m[1]}[{m[2]}]"
    elif name and (m := re.match(r"\s+dtype: (\S+)", line)):
        dtype = m[1]
    elif name and (m := re.match(r"\s+shape: (.*)", line)):
        tensors.append(f"{name} {dtype} {m[1]}")
        name = None
width = max(map(len, tensors))
for i in range(0, len(tensors), 2):
    print("  " + "   ".join(t.ljust(width) for t in tensors[i:i + 2]).rstrip())
'
