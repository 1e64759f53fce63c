#!/usr/bin/env bash
# Version 6's diffusion stages on the f=4 VAE in v6-stages/vae (issue 22), one after another in the
# background; safe to run again after a stop: finished stages (in RUN/stages.json) are skipped, an
# unfinished one resumes from its newest checkpoint (--resume).
#   nohup bash v6-stages/train.sh > runs/issue22-v6.log 2>&1 &
# RUN (default runs/issue22-v6) starts from the finished stages' weights committed in v6-stages
# (vae/, unet/, ... and stages.json, their records); the backbone warm-starts from
# RUN-init/unet: version 5's shipped UNet wherever shapes agree (all but conv_in/conv_out, whose
# channels grow 4x with the 2x2 latent patch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${V6_TRAIN_COPY:-}" ]; then  # bash reads a script as it runs: run a copy, so this file may change meanwhile
  mkdir -p runs && cp v6-stages/train.sh runs/.v6-train.sh
  V6_TRAIN_COPY=1 exec bash runs/.v6-train.sh "$@"
fi
RUN=${RUN:-runs/issue22-v6}
export SEMCOMM_TRAIN_THREADS=${SEMCOMM_TRAIN_THREADS:-1}
T="nice -n 19 scripts/with-env semcomm train"
done_stage() { [ -f "$RUN/stages.json" ] && python3 -c "import json,sys; sys.exit(0 if '$1' in json.load(open('$RUN/stages.json')) else 1)"; }
stage() {
  local name=$1; shift
  if done_stage "$name"; then echo "[$name] finished earlier: skipped"; return; fi
  echo "[$name] start $(date -u +%FT%TZ)"
  $T "$name" --preset tabletop-f4 --out "$RUN" --resume --no-progress "$@"
  echo "[$name] end $(date -u +%FT%TZ)"
}
if [ ! -d "$RUN/model/vae" ]; then  # a fresh machine: the finished stages committed in v6-stages
  mkdir -p "$RUN/model"
  for part in vae unet controlnet restoration_adapter.safetensors temporal_adapter refiner; do
    if [ -e "v6-stages/$part" ]; then cp -r "v6-stages/$part" "$RUN/model/$part"; fi
  done
  if [ -e v6-stages/teacher_temporal ]; then cp -r v6-stages/teacher_temporal "$RUN/teacher_temporal"; fi
  cp v6-stages/backbone.json "$RUN/model/backbone.json"
  cp v6-stages/stages.json "$RUN/stages.json"
fi
if [ ! -d "$RUN-init/unet" ]; then
  scripts/with-env python - "$RUN-init/unet" <<'PY'
import sys
from semcomm_ros.synth.model import SynthModel
from semcomm_ros.training.backbone import build_unet, unet_latent_size
from semcomm_ros.training.config import get_preset
preset = get_preset("tabletop-f4")
unet = build_unet(preset.backbone, unet_latent_size(preset.backbone, preset.data.resolution, 4))
own, v5 = unet.state_dict(), SynthModel.from_pretrained().unet.state_dict()
own.update({k: v for k, v in v5.items() if k in own and own[k].shape == v.shape})
unet.load_state_dict(own)
unet.save_pretrained(sys.argv[1], safe_serialization=True)
PY
fi
stage backbone --init "$RUN-init" --steps 4000 --checkpoint-every 250
stage control
stage restoration
stage teacher
stage lcm
stage refiner --checkpoint-every 100
echo "all stages done $(date -u +%FT%TZ)"
