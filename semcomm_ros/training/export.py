"""Copy a trained model directory to where the synthesizer loads it (e.g. the shipped default).

Only the synthesizer's own layout is copied (``synthesizer.json`` and the parts it names, plus
``backbone.json`` and ``training.json`` -- the record of how it was trained); checkpoints, caches
and logs stay in the run directory. The copy is loaded back with
``CausalSynthesizer.from_pretrained`` before it replaces the destination, so a broken export
never overwrites a working model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from semcomm_ros.synth.config import SynthConfig

MAX_SHIPPED_MB = 50.0


def export_model(src: str | Path, dest: str | Path, stages_json: str | Path | None = None,
                 max_mb: float | None = None) -> Path:
    """``max_mb``: size limit; default MAX_SHIPPED_MB for the repository's shipped-model path, none
    elsewhere (an SD-1.5-sized model exported for an operator station is gigabytes)."""
    # deferred: imports torch (~2 s); `semcomm train --help` imports this module through training.cli
    from semcomm_ros.synth import CausalSynthesizer
    from semcomm_ros.synth.model import DEFAULT_MODEL_DIR  # deferred: imports torch, as above

    src, dest = Path(src), Path(dest)
    if max_mb is None and dest.resolve() == DEFAULT_MODEL_DIR.resolve():
        max_mb = MAX_SHIPPED_MB
    cfg = SynthConfig.load(src)
    names = [p for p in cfg.parts.values() if p] + ["synthesizer.json"]
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent if dest.parent.is_dir() else None))
    try:
        for name in names:
            p = src / name
            if p.is_dir():
                shutil.copytree(p, tmp / name)
            elif p.is_file():
                shutil.copy2(p, tmp / name)
            else:
                raise FileNotFoundError(f"model part {p} named by {src / 'synthesizer.json'} is missing")
        if (src / "backbone.json").is_file():  # how the backbone was made: trained here, or which checkpoint
            shutil.copy2(src / "backbone.json", tmp / "backbone.json")
        stages = Path(stages_json) if stages_json else src.parent / "stages.json"
        if stages.is_file():
            (tmp / "training.json").write_text(json.dumps(json.loads(stages.read_text()), indent=2) + "\n")
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) / 2 ** 20
        if max_mb is not None and size > max_mb:
            raise ValueError(f"model is {size:.1f} MB, more than the {max_mb:g} MB allowed for shipped weights")
        CausalSynthesizer.from_pretrained(tmp)  # must load before it replaces anything
        keep = dest / "MODEL_CARD.md"
        card = keep.read_text() if keep.is_file() else None
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        if card is not None:
            keep.write_text(card)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
