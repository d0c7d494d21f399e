"""A tier's models as this deployment runs them: the manifest's entries, overridden.

A manifest entry says how its model runs anywhere (``runtime``: providers, threads;
``input.max_batch``). A worker on a GPU, or on a machine with more or fewer cores,
wants other values than the same model elsewhere, and the manifest (with the SHA-256
of each file) is shared by every deployment: so a worker's ``providers``,
``intra_op_threads`` and ``max_batch`` (``edge.*``, ``cloud.*``: pipeline/config.py)
replace those values for the declared models of its ``models``, without editing the
manifest. Nothing else of an entry changes, and the file is verified as always.

A tier without ``models`` runs its region classifier (role ``edge`` or ``cloud``),
which takes only ``intra_op_threads``: it runs on its entry's providers and all of a
batch's regions in one call (the settings refuse the other two without ``models``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from pipeline.config import WorkerSettings
from pipeline.inference.analysis import Analyser, RegionClassifier
from pipeline.inference.chain import ModelChain
from pipeline.inference.declaration import ModelDeclaration
from pipeline.inference.manifest import DEFAULT_MANIFEST, load_declaration
from pipeline.inference.model import OnnxModel
from pipeline.inference.providers import session_for
from pipeline.inference.runtime import DeclaredModel
from pipeline.inference.session import read_verified
from schemas.messages import Source

__all__ = ["deployed", "deployed_analyser", "load_deployed"]

log = logging.getLogger(__name__)


def deployed(declaration: ModelDeclaration, cfg: WorkerSettings) -> ModelDeclaration:
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


def load_deployed(
    role: str, manifest: Path | None, cfg: WorkerSettings, *, section: str
) -> DeclaredModel:
    """The model of ``role`` as ``DeclaredModel.load`` loads it, with ``deployed`` values;
    ``section`` (``edge``, ``cloud``) names the settings in the log."""
    path = DEFAULT_MANIFEST if manifest is None else Path(manifest)
    declared, where = load_declaration(role, path)
    declaration = deployed(declared, cfg)
    if declaration != declared:
        log.info(
            "%s: this deployment runs it on %s, %d intra-op threads, %d images per call "
            "(%s.providers, %s.intra_op_threads, %s.max_batch)",
            where,
            list(declaration.runtime.providers),
            declaration.runtime.intra_op_threads,
            declaration.input.max_batch,
            section,
            section,
            section,
        )
    data = read_verified(path.parent / declaration.file, declaration.sha256)
    session = session_for(data, declaration.runtime, where)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    labels = declaration.resolve_labels(path.parent, metadata, where)
    return DeclaredModel(declaration, session, labels, where)


def deployed_analyser(
    cfg: WorkerSettings,
    models: str,
    *,
    source: Source,
    signal: str,
    model: OnnxModel | None = None,
) -> Analyser:
    """What a worker of tier ``source`` runs, as ``cfg`` deploys it: the declared chain of
    ``models`` (manifest roles, comma-separated), else the region classifier ``model``
    (already loaded: run as it is) or, without one, that of the tier's own role."""
    manifest = Path(cfg.model_manifest) if cfg.model_manifest else None
    section = source.value
    if models and model is None:
        roles = [r.strip() for r in models.split(",") if r.strip()]
        stages = tuple(load_deployed(role, manifest, cfg, section=section) for role in roles)
        return ModelChain(stages, source)
    if model is None:
        threads = cfg.intra_op_threads or None
        if threads:
            log.info(
                "the %s region classifier runs on %d intra-op threads (%s.intra_op_threads)",
                section,
                threads,
                section,
            )
        model = OnnxModel.load(section, manifest, intra_op_threads=threads)
    return RegionClassifier(model, source, signal)
