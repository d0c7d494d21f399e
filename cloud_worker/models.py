"""The cloud's models as this deployment runs them: the manifest's entries, overridden.

A manifest entry says how its model runs anywhere (``runtime``: providers, threads;
``input.max_batch``). A cloud worker on a GPU wants other values than the same model
on a CPU, and the manifest (with the SHA-256 of each file) is shared by every
deployment: so ``cloud.providers``, ``cloud.intra_op_threads`` and ``cloud.max_batch``
replace those values for the declared models of ``cloud.models``, without editing the
manifest. Nothing else of an entry changes, and the file is verified as always.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from pipeline.config import CloudSettings
from pipeline.inference.analysis import Analyser
from pipeline.inference.calibration import DEFAULT_SIGNAL
from pipeline.inference.chain import ModelChain, tier_analyser
from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.manifest import DEFAULT_MANIFEST, load_declaration
from pipeline.inference.model import OnnxModel
from pipeline.inference.providers import session_for
from pipeline.inference.runtime import DeclaredModel
from pipeline.inference.session import read_verified
from schemas.messages import Source

__all__ = ["cloud_analyser", "deployed", "load_deployed"]

log = logging.getLogger("cloud_worker.worker")


def deployed(declaration: ModelDeclaration, cfg: CloudSettings) -> ModelDeclaration:
    """``declaration`` with the values ``cfg`` overrides (providers, intra-op threads,
    images per call) in place of its own."""
    runtime, spec = declaration.runtime, declaration.input
    if cfg.provider_list:
        runtime = replace(runtime, providers=cfg.provider_list)
    if cfg.intra_op_threads:
        runtime = replace(runtime, intra_op_threads=cfg.intra_op_threads)
    if cfg.max_batch:
        spec = replace(spec, max_batch=cfg.max_batch)
    return replace(declaration, runtime=runtime, input=spec)


def load_deployed(role: str, manifest: Path | None, cfg: CloudSettings) -> DeclaredModel:
    """The model of ``role`` as ``DeclaredModel.load`` loads it, with ``deployed`` values."""
    path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
    declared, where = load_declaration(role, path)
    declaration = deployed(declared, cfg)
    if declaration != declared:
        log.info(
            "%s: this deployment runs it on %s, %d intra-op threads, %d images per call "
            "(cloud.providers, cloud.intra_op_threads, cloud.max_batch)",
            where,
            list(declaration.runtime.providers),
            declaration.runtime.intra_op_threads,
            declaration.input.max_batch,
        )
    data = read_verified(path.parent / declaration.file, declaration.sha256)
    session = session_for(data, declaration.runtime, where)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    labels = declaration.resolve_labels(path.parent, metadata, where)
    return DeclaredModel(declaration, session, labels, where)


def cloud_analyser(cfg: CloudSettings, *, model: OnnxModel | None = None) -> Analyser:
    """What a cloud worker runs (``tier_analyser``), its declared models as ``cfg`` says."""
    manifest = Path(cfg.model_manifest) if cfg.model_manifest else None
    if cfg.models and model is None and not cfg.runs_as_declared:
        roles = [r.strip() for r in cfg.models.split(",") if r.strip()]
        stages = tuple(load_deployed(role, manifest, cfg) for role in roles)
        return ModelChain(stages, Source.CLOUD)
    return tier_analyser(
        cfg.models, manifest, source=Source.CLOUD, signal=DEFAULT_SIGNAL, model=model
    )
