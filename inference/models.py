"""Models: the device, any open_clip CLIP zero-shot and DebiasPL's ResNet-50 (weight files are
read by inference.checkpoints).

Each builder returns (torch module mapping images to [B, K] logits, eval transform, identity of
the weights). torch, torchvision and open_clip are imported inside the functions that use them.
"""
import contextlib
import difflib
import json
import sys
from pathlib import Path

import numpy as np

from sources.classes import SINGLE_TEMPLATE as SINGLE_PROMPT, fill_template, openai_imagenet_templates
from inference import offline_weights
from inference.checkpoints import is_torchscript_archive, read_checkpoint, read_clip_state_dict
from runs.outputs import UserError, plural, write_atomic

DEFAULT_CLIP_ARCHITECTURE = "RN50"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


PRECISIONS = ("fp32", "fp16", "bf16")
TEXT_CLASSES_PER_BATCH = 10  # classes per text-encoder batch: 800 prompts of the 80-template ensemble
AUTOCAST_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}  # names in torch


def resolve_device(name, local_rank=0):
    """The torch device of --device NAME; under torchrun, GPU number local_rank of the node."""
    import torch
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but this machine has no usable CUDA GPU; "
                        "use --device cpu.")
    if name == "cpu":
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"this process is number {local_rank} on its node but the node has "
                        f"{torch.cuda.device_count()} GPU(s); start at most that many processes "
                        "per node (torchrun --nproc-per-node).")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def set_precision(device, precision):
    """Make the forward passes compute in `precision`: stop on the CPU for anything but fp32.

    fp32 is true fp32: TF32 off for matmuls and cuDNN convolutions (PyTorch lets convolutions
    use TF32 by default). CLIP's logits are 100 x cosine within a few units of each other, so
    TF32's or fp16's ~1e-3 error flips near-tied predictions; fp32 on a GPU matches the CPU's
    logits to ~1e-5. fp16 / bf16 are autocast (models.autocast), with TF32 for what stays fp32."""
    import torch
    if precision != "fp32" and device.type != "cuda":
        raise UserError(f"--precision {precision} needs a CUDA GPU; on the CPU only fp32 exists.")
    fp32_mode = "ieee" if precision == "fp32" else "tf32"
    torch.backends.cuda.matmul.fp32_precision = fp32_mode
    torch.backends.cudnn.conv.fp32_precision = fp32_mode


def autocast(device, precision):
    """The autocast context of `precision`: disabled for fp32, on every device alike."""
    import torch
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=getattr(torch, dtype) if dtype else None,
                          enabled=dtype is not None)


@contextlib.contextmanager
def without_random_init():
    """Build modules without drawing their random initial weights (~0.7 s of CLIP RN50 on a CPU)
    when a weights file fills them next: check_state_dict makes sure it holds every parameter and
    saved buffer; the unsaved buffers (CLIP's attention mask) are computed, not drawn."""
    import torch
    init = torch.nn.init
    drawers = {name: getattr(init, name) for name in dir(init)
               if name.endswith("_") and not name.startswith("_")}  # normal_, kaiming_uniform_...
    for name in drawers:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, drawer in drawers.items():
            setattr(init, name, drawer)


def check_state_dict(model, state_dict, source, model_name=None, fix=None):
    """Stop with the differing keys or shapes (the first three of each, and how many more) when
    `state_dict` does not fit `model` exactly; the message names `fix` when given."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [f"{key} {tuple(state_dict[key].shape)} vs {tuple(value.shape)}"
                for key, value in expected.items()
                if key in state_dict and tuple(state_dict[key].shape) != tuple(value.shape)]
    problems = [f"{label} {', '.join(items[:3])}" + (f" and {len(items) - 3} more" if len(items) > 3 else "")
                for label, items in (("missing keys:", missing), ("unexpected keys:", unexpected),
                                     ("shapes differ:", reshaped)) if items]
    if problems:
        raise UserError(f"{source} does not fit {model_name or type(model).__name__} "
                        f"({'; '.join(problems)}){f'; {fix}' if fix else ''}.")


def weights_are_a_tag(architecture, weights):
    """True when `weights` is one of open_clip's weight tags for `architecture`, False when it is
    a file; otherwise a UserError naming the valid model names, tags or the missing file."""
    import open_clip
    weights = str(weights)
    architectures = open_clip.list_models()
    if architecture not in architectures:
        by_lower_case = {name.lower(): name for name in architectures}
        close = [by_lower_case[name] for name in
                 difflib.get_close_matches(architecture.lower(), by_lower_case, n=3, cutoff=0.5)]
        examples = ", ".join(close or ["RN50", "ViT-B-32", "ViT-B-16"])
        raise UserError(f"--clip-model {architecture} is not one of open_clip's {len(architectures)} "
                        f"models; pass one of them, such as {examples}.")
    if open_clip.pretrained.is_pretrained_cfg(architecture, weights):
        return True
    path = Path(weights).expanduser()
    if path.is_file():
        return False
    tags = open_clip.list_pretrained_tags_by_model(architecture)
    tag_choice = f"one of open_clip's tags for --clip-model {architecture} ({', '.join(tags)})"
    if path.suffix or len(path.parts) > 1:  # meant as a file
        raise UserError(f"--clip-weights {weights} does not exist; pass an existing weights file"
                        + (f" or {tag_choice}" if tags else "") + ".")
    if not tags:
        raise UserError(f"--clip-weights {weights} is not a file and open_clip has no weights for "
                        f"--clip-model {architecture}; pass a weights file of that model.")
    raise UserError(f"--clip-weights {weights} is neither a file nor {tag_choice}; pass one of "
                    "those tags or a weights file.")


def uses_quick_gelu(architecture, weights, is_tag):
    """Whether CLIP `architecture` runs QuickGELU with these weights.

    OpenAI trained all its CLIPs with QuickGELU, yet open_clip 3.x builds "RN50" with its config's
    nn.GELU even for pretrained="openai" (it only warns of the mismatch): every activation, hence
    every logit, would differ. So: a tag as open_clip's table says it was trained; OpenAI's
    TorchScript file always; a state dict when every tag of the architecture was trained with
    QuickGELU (RN50's openai, yfcc15m and cc12m: RN50 files have always loaded so), else as the
    architecture's config says (the "-quickgelu" names, e.g. ViT-B-32-quickgelu, for the others)."""
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model
    if is_tag:
        return get_pretrained_cfg(architecture, weights).get("quick_gelu", False)
    if is_torchscript_archive(Path(weights).expanduser()):
        return True
    tags = list_pretrained_tags_by_model(architecture)
    return bool(tags) and all(get_pretrained_cfg(architecture, tag).get("quick_gelu", False)
                              for tag in tags)


def build_unloaded_clip(architecture, quick_gelu, device="cpu", preprocessing=None):
    """(model, eval transform) of `architecture` before a weights file fills it: no random draws,
    no "initialized randomly" warning. On the meta device it is a skeleton of shapes only.
    `preprocessing`: create_model_and_transforms's image options (a tag's, offline_weights)."""
    import logging
    import open_clip
    import torch
    logging.disable(logging.WARNING)
    try:
        with without_random_init(), torch.device(device):
            model, _, transform = open_clip.create_model_and_transforms(
                architecture, force_quick_gelu=quick_gelu, device=device, **(preprocessing or {}))
    finally:
        logging.disable(logging.NOTSET)
    return model, transform


def check_clip_state_dict(model, state_dict, architecture, weights):
    check_state_dict(model, state_dict, f"--clip-weights {weights}", f"CLIP {architecture}",
                     "pass the --clip-model it was saved from")


def check_clip_choice(architecture, weights, trust=False):
    """Stop early, before any image is read or model built, on an unknown --clip-model, a tag it
    does not have, a missing file or a file of another architecture (read, but compared with a
    skeleton on the meta device); downloads nothing. A tag must be in a local cache or the
    network reachable (offline_weights.resolve_tag)."""
    if weights_are_a_tag(architecture, weights):
        offline_weights.resolve_tag(architecture, weights)
        return
    state_dict = read_clip_state_dict(weights, trust)
    quick_gelu = uses_quick_gelu(architecture, weights, is_tag=False)
    skeleton, _ = build_unloaded_clip(architecture, quick_gelu, device="meta")
    check_clip_state_dict(skeleton, state_dict, architecture, weights)


def load_clip_weights(architecture, weights, trust=False):
    """(open_clip CLIP `architecture` holding `weights`, its eval transform): a local file, or a
    tag, read from the local caches when it is there (offline_weights) and else downloaded by
    open_clip."""
    import open_clip
    is_tag = weights_are_a_tag(architecture, weights)
    quick_gelu = uses_quick_gelu(architecture, weights, is_tag)
    cached = offline_weights.resolve_tag(architecture, weights) if is_tag else None
    if is_tag and cached is None:
        try:
            model, _, transform = open_clip.create_model_and_transforms(
                architecture, pretrained=weights, force_quick_gelu=quick_gelu)
        except (OSError, RuntimeError) as error:  # open_clip wraps download failures in RuntimeError
            raise UserError(f"open_clip could not fetch the {weights} weights of {architecture} "
                            f"({str(error).splitlines()[0]}); download them elsewhere and pass "
                            "--clip-weights PATH.") from None
        return model, transform
    preprocessing = offline_weights.tag_preprocessing(architecture, weights) if cached else None
    model, transform = build_unloaded_clip(architecture, quick_gelu, preprocessing=preprocessing)
    state_dict = read_clip_state_dict(cached or weights, trust)
    check_clip_state_dict(model, state_dict, architecture, weights)
    model.load_state_dict(state_dict)
    return model, transform


def clip_prompt_templates(prompts):
    """The {c} templates of --prompts ensemble or single, for caches that record no templates."""
    return openai_imagenet_templates() if prompts == "ensemble" else (SINGLE_PROMPT,)


def file_identity(path):
    """What names a weights file's content: its size and SHA-256 (mtime and path can change)."""
    import hashlib
    path = Path(path).expanduser().resolve()
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            digest.update(block)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def loaded_and_identified(load, identify):
    """(load(), identify()), the identity computed meanwhile in a thread: hashlib lets go of the
    GIL, so hashing the weights file (~0.3 s for RN50's on a CPU core) adds nothing to loading it."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as thread:
        identity = thread.submit(identify)
        return load(), identity.result()


def clip_weights_identity(architecture, weights):
    """The architecture and what names the weights: open_clip's tag (and version) or the file."""
    if weights_are_a_tag(architecture, weights):
        import open_clip
        return {"architecture": architecture, "tag": weights, "open_clip": open_clip.__version__}
    return {"architecture": architecture, **file_identity(weights)}


def text_classifier_path(cache_dir, architecture, weights_identity, templates, class_names, precision):
    """Cache file of CLIP's text classifier, keyed by everything it depends on."""
    import hashlib
    key = json.dumps([architecture, weights_identity, list(templates), list(class_names)]
                     + ([] if precision == "fp32" else [precision]))
    return Path(cache_dir) / f"clip-text-classifier-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"


def clip_text_classifier(clip, architecture, templates, class_names, device, precision, cache_path):
    """[D, K] unit text embeddings averaged over the {c} templates; read from / written to
    cache_path, since the 8,000 ensemble prompts cost minutes on a CPU."""
    import functools
    import open_clip
    import torch
    if cache_path.is_file():
        try:
            return torch.from_numpy(np.load(cache_path, allow_pickle=False))
        except (OSError, ValueError):
            print(f"warning: ignoring the damaged text-classifier cache {cache_path}.", file=sys.stderr)
    from tqdm import tqdm
    # open_clip would fill string templates positionally ("{}"): callables fill {c}.
    fillers = [functools.partial(fill_template, template) for template in templates]
    tokenizer = open_clip.get_tokenizer(architecture)
    # Class by class in batches, each class's embedding its own: one labelled bar (open_clip's
    # has no label) that counts classes.
    batches = [list(class_names[start:start + TEXT_CLASSES_PER_BATCH])
               for start in range(0, len(class_names), TEXT_CLASSES_PER_BATCH)]
    with autocast(device, precision), tqdm(
            total=len(class_names), unit="class", dynamic_ncols=True,
            desc=f"CLIP {architecture} text classifier ({plural(len(templates), 'prompt')} a class)") as bar:
        parts = []
        for batch in batches:
            parts.append(open_clip.build_zero_shot_classifier(
                clip, tokenizer=tokenizer, classnames=batch, templates=fillers, device=device,
                use_tqdm=False).float().cpu())
            bar.update(len(batch))
    classifier = torch.cat(parts, dim=1)
    write_atomic(cache_path, lambda f: np.save(f, classifier.numpy()))
    return classifier


def build_clip_zero_shot(architecture, weights, templates, class_names, device, precision, cache_dir,
                         trust=False, keep_features=False):
    """open_clip CLIP `architecture` with `weights` (a tag or a file) as a classifier over
    `class_names` through the {c} `templates`: logit_scale.exp() x cosine similarity (a SigLIP's
    logit_bias, the same for every class, would change no prediction and is left out).
    Returns (module, the model's own eval transform, identity of the architecture and weights);
    with keep_features the module returns (logits, unit image features) and has
    `text_features` [K, D] and `scale`, such that logits = scale x image features @ text_features.T."""
    import torch

    class ZeroShotCLIP(torch.nn.Module):
        def __init__(self, clip, classifier):
            super().__init__()
            self.clip = clip
            self.register_buffer("classifier", classifier)

        @property
        def text_features(self):
            return self.classifier.T.float().cpu().numpy()

        @property
        def scale(self):
            return float(self.clip.logit_scale.detach().exp())

        def forward(self, images):
            features = self.clip.encode_image(images, normalize=True)
            logits = self.clip.logit_scale.exp() * features @ self.classifier.to(features.dtype)
            return (logits, features) if keep_features else logits

    (clip, transform), identity = loaded_and_identified(
        lambda: load_clip_weights(architecture, weights, trust),
        lambda: clip_weights_identity(architecture, weights))
    clip = clip.to(device).eval()
    classifier = clip_text_classifier(
        clip, architecture, templates, class_names, device, precision,
        text_classifier_path(cache_dir, architecture, identity, templates, class_names, precision))
    return ZeroShotCLIP(clip, classifier.to(device)), transform, identity


def debiaspl_state_dict(checkpoint, branch):
    """torchvision ResNet-50 keys from the FixMatch wrapper's `module.<branch>.{backbone,fc}.*`."""
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise UserError("the DebiasPL checkpoint has no 'state_dict' entry.")
    prefix = f"{branch}."
    branch_weights = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(prefix):
            branch_weights[key[len(prefix):].removeprefix("backbone.")] = value
    if not branch_weights:
        branches = sorted({key.removeprefix("module.").split(".")[0] for key in state_dict})
        raise UserError(f"the DebiasPL checkpoint has no '{branch}' branch (its state_dict holds "
                        f"{', '.join(branches)}); choose --branch accordingly.")
    return branch_weights


def build_debiaspl(checkpoint_path, branch, imagenet_indices, trust=False):
    """DebiasPL's ResNet-50 with its 1000 ImageNet-1k logits cut down to the dataset's classes."""
    import torch
    from torchvision import transforms

    class ClassColumns(torch.nn.Module):
        def __init__(self, network, columns):
            super().__init__()
            self.network = network
            self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.long))

        def forward(self, images):
            return self.network(images).index_select(1, self.columns)

    network, identity = loaded_and_identified(
        lambda: load_debiaspl_network(checkpoint_path, branch, trust),
        lambda: file_identity(checkpoint_path))
    transform = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return ClassColumns(network, imagenet_indices), transform, identity


def load_debiaspl_network(checkpoint_path, branch, trust=False):
    """torchvision's ResNet-50 holding the weights of the checkpoint's `branch`."""
    import torchvision
    with without_random_init():
        network = torchvision.models.resnet50()
    checkpoint = read_checkpoint(checkpoint_path, "DebiasPL checkpoint", trust)
    state_dict = debiaspl_state_dict(checkpoint, branch)
    check_state_dict(network, state_dict, f"the {branch} branch of {checkpoint_path}")
    network.load_state_dict(state_dict)
    return network
