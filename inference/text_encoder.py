"""The text encoder of the CLIP that made a run's cache, for the runs that embed new class names
or prompts without reading an image: clip-ca (its alternative names) and --rescore.
"""
import sys
from pathlib import Path

from runs.outputs import UserError
from runs.descriptors import DEFAULT_CLIP_ARCHITECTURE


def clip_text_embedder(clip_meta, device="auto", trust=False, cache_dir=None, templates=None,
                       needed_by="this run"):
    """names -> [len(names), D] unit text embeddings from the CLIP that made the cache of
    `clip_meta` (its weights and precision), each name averaged over `templates` (default: the
    cache's own prompts) as the zero-shot classifier is; for the demo's SIMULATED clip, the
    simulation's (see simulation.simulated_name_embedder). Weights that are not on this machine
    (a brought cache) stop in one sentence saying what `needed_by` needs."""
    if clip_meta.get("simulated"):  # the demo's: made by no CLIP, so its names' stand-ins
        from demo import simulation
        return simulation.simulated_name_embedder(clip_meta["seed"], clip_meta["dimension"])
    from inference import models  # torch and open_clip: only for the names' embeddings
    architecture = clip_meta.get("architecture", DEFAULT_CLIP_ARCHITECTURE)
    weights = clip_meta.get("weights", "openai")
    precision = clip_meta.get("precision", "fp32")
    file_identity = clip_meta.get("weights_identity", {})
    if "sha256" in file_identity and not Path(weights).expanduser().is_file():
        raise UserError(f"{needed_by} embeds text with the CLIP that made the cache, {architecture} "
                        f"with the weights file {weights}, which is not on this machine; put that "
                        "file there (Algorithm 1's verdicts need no weights: they are in the "
                        "source run's why.json).")
    device = models.resolve_device(device)
    models.set_precision(device, precision)
    clip, _ = models.load_clip_weights(architecture, weights, trust)
    clip = clip.to(device).eval()
    identity = models.clip_weights_identity(architecture, weights)
    if identity.get("sha256") and identity["sha256"] != file_identity.get("sha256"):
        print(f"warning: {weights} is not the weights file the source's cache was made with; the "
              "names are embedded with it all the same.", file=sys.stderr)
    # The templates the cache was made with; caches from before they were recorded, by --prompts.
    templates = tuple(templates or clip_meta.get("templates")
                      or models.clip_prompt_templates(clip_meta.get("prompts", "ensemble")))

    def embed(names):
        path = models.text_classifier_path(Path(cache_dir or "cache"), architecture, identity,
                                           templates, names, precision)
        return models.clip_text_classifier(clip, architecture, templates, names, device,
                                           precision, path).numpy().T
    return embed
