#!/usr/bin/env bash
# Issue 9's fine-tunes on a lent GPU in one device call, then the MRL model's Debian embeddings
# for issue 11's real set. Here, first (writes the git-ignored .device/, about 55 MiB):
#
#     python benchmarks/device/pack.py
#
# then the device tool's `run` with carry [".device"], timeout_s 600 and the command
#
#     bash benchmarks/device/text_gpu.sh            # EPOCHS=2 PAIRS=all BATCH=32 LR=1e-4 ROTATION=1
#
# (override by prefixing, e.g. `EPOCHS=2 WEIGHTS=1,1,1,1,1,5 bash benchmarks/...`; a dry run
# here on the CPU: `OUT=/tmp/o DEVICE=cpu WHEELS= PAIRS=64 EPOCHS=1 TEXTS=300 EXTRA="--max-corpus
# 300 --fit-rows 200" bash benchmarks/device/text_gpu.sh`). Phases, each
# written to $OUT as soon as it ends, so a run cut short still returns what it finished:
#   1. ft_plain and ft_mrl (benchmarks/text.py --device cuda)     -> finetuned.json
#   2. the Debian descriptions embedded by the ft_mrl model  -> emb-part*.npy, emb-manifest.json
#   3. the frozen rows and the sentence-transformers anchor        -> others.json
# Back here: `python benchmarks/device/transfer.py join-embeddings <files_at> runs/debian-real/
# debian-descriptions-mrl-gpu`, and the two JSON reports beside docs/results/text/.
set -euo pipefail
: "${OUT:?run this through the device tool, which sets OUT}"
EPOCHS=${EPOCHS:-2} PAIRS=${PAIRS:-1000000} BATCH=${BATCH:-32} LR=${LR:-1e-4} WEIGHTS=${WEIGHTS:-}
ROTATION=${ROTATION:-1}  # 1: our Matryoshka row learns a rotation (benchmarks/text.py --rotation)
DEVICE=${DEVICE:-cuda} TEXTS=${TEXTS:-0} EXTRA=${EXTRA:-}  # TEXTS > 0: embed only the first TEXTS
WHEELS=${WHEELS-.device/wheels}  # CPython 3.12 wheels; empty: use what is installed
WORK=${WORK:-/tmp/mrl-gpu}  # scratch, emptied first
rm -rf "$WORK" && mkdir -p "$WORK"
exec > >(tee "$OUT/log.txt") 2>&1
t0=$SECONDS
phase() { echo "=== $(( SECONDS - t0 )) s: $*"; }

phase "install the carried wheels, restore the float32 model"
[[ -n $WHEELS ]] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$WORK/site" "$WHEELS"/*.whl
export PYTHONPATH=$WORK/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 benchmarks/device/transfer.py unpack-model .device/minilm $WORK/minilm
[[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv,noheader
python3 -c "import torch, transformers as t, sentence_transformers as s
print('torch', torch.__version__, 'transformers', t.__version__, 'st', s.__version__)"

common=(--device "$DEVICE" --threads "$(nproc)" --data .device/debian-packages.jsonl.gz
        --model "$WORK/minilm" --cache "$WORK/cache" --finetune-pairs "$PAIRS"
        --finetune-epochs "$EPOCHS"
        --finetune-batch-size "$BATCH" --finetune-lr "$LR" --batch-size 256)
[[ -n $WEIGHTS ]] && common+=(--nesting-weights "$WEIGHTS")
[[ $ROTATION == 1 ]] && common+=(--rotation)
read -ra extra <<< "$EXTRA" && common+=("${extra[@]}")

phase "1. ft_plain, ft_mrl"
python3 benchmarks/text.py "${common[@]}" --rows ft_plain,ft_mrl --out $WORK/finetuned
cp $WORK/finetuned/results.json "$OUT/finetuned.json"

phase "2. the Debian descriptions through the ft_mrl model"
python3 benchmarks/debian_descriptions.py --data .device/debian-packages.jsonl.gz \
    --out $WORK/descriptions.txt
(( TEXTS > 0 )) && sed -i "$(( TEXTS + 1 )),\$d" $WORK/descriptions.txt
run_dir=$(ls -d $WORK/cache/finetune-*/mrl)
python3 -m mrl.cli.main embed "$run_dir" --texts $WORK/descriptions.txt --out $WORK/emb \
    --batch-size 512 --device "$DEVICE"
python3 benchmarks/device/transfer.py split-embeddings $WORK/emb "$OUT"

phase "3. frozen rows and the sentence-transformers anchor"
python3 benchmarks/text.py "${common[@]}" --rows truncated,pca,adaptor_unsup,adaptor_sup,ft_st \
    --out $WORK/others
cp $WORK/others/results.json "$OUT/others.json"
phase "done"
