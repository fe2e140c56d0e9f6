"""Offline first: an open_clip weights tag (`--clip-weights openai`) resolved from the local caches
before any image is read, and a short answer when it is in none and the network is unreachable.

Compute nodes are usually offline. open_clip asks the Hugging Face hub first, and
huggingface_hub retries for a minute, warning each time, before it gives up or falls back to its
cache. So the tool looks itself, in the two places open_clip downloads to: the Hugging Face
cache (its hub repository's safetensors or .bin file; HF_HOME and HF_HUB_CACHE are honoured)
and open_clip's URL cache (~/.cache/clip, OpenAI's .pt files). A file found there is loaded
directly, without the network. A tag in neither is downloaded by open_clip when the network
answers within NETWORK_TIMEOUT; else, or with HF_HUB_OFFLINE=1, the run stops in three lines:
the file to fetch, where to put it, and --clip-weights PATH as the other way.
"""
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from runs.outputs import UserError

NETWORK_TIMEOUT = 3.0  # seconds for the hub to answer (DNS included) before it counts as unreachable
HUB_HOST = "huggingface.co"
HUB_DEFAULT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's
URL_CACHE = Path("~/.cache/clip")  # where open_clip saves the weights it downloads from a URL
TRUE_WORDS = ("1", "on", "yes", "true")


def hub_files(hub):
    """(repository, file names in open_clip's order of preference) of a tag's `hf_hub` entry:
    'org/model/' for open_clip's default file names, 'org/model/file.bin' for one file."""
    repository, filename = os.path.split(hub)
    if not filename:
        return repository, HUB_DEFAULT_FILES
    stem, suffix = os.path.splitext(filename)
    return repository, ((f"{stem}.safetensors", filename) if suffix in (".bin", ".pth") else (filename,))


def hub_cache_dir():
    """The Hugging Face hub cache, as huggingface_hub finds it from the environment."""
    from huggingface_hub import constants
    return Path(constants.HF_HUB_CACHE)


def cached_tag_file(config):
    """The local file of a tag's weights (open_clip's pretrained config), or None."""
    if config.get("file"):
        return Path(config["file"]) if Path(config["file"]).is_file() else None
    if config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        repository, filenames = hub_files(config["hf_hub"])
        for filename in filenames:
            found = try_to_load_from_cache(repository, filename, cache_dir=hub_cache_dir())
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if config.get("url"):
        path = URL_CACHE.expanduser() / os.path.basename(config["url"])
        if path.is_file():
            return path
    return None


def reachable(host, port=443, timeout=NETWORK_TIMEOUT):
    """None when a TCP connection to host:port (or to the HTTPS proxy, when one is set) opens
    within `timeout` seconds, DNS included; else why not. A thread bounds the wait, since name
    resolution has no timeout of its own."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parts.hostname, parts.port or 3128
    outcome = ["no answer within %g s" % timeout]

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome[0] = None
        except OSError as error:
            outcome[0] = error.strerror or str(error) or type(error).__name__

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout)
    return outcome[0]


def resolve_tag(architecture, tag):
    """The local file of open_clip's `tag` weights of `architecture`, or None when it is in no
    local cache but the network answers (open_clip then downloads it). A UserError of at most
    three lines when it is in no cache and the network is off (HF_HUB_OFFLINE=1) or unreachable."""
    from open_clip.pretrained import get_pretrained_cfg
    config = get_pretrained_cfg(architecture, tag)
    local = cached_tag_file(config)
    if local:
        return local
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE_WORDS
    host = HUB_HOST if config.get("hf_hub") else urlsplit(config.get("url", "")).hostname or HUB_HOST
    why = "HF_HUB_OFFLINE is set" if offline else reachable(host)
    if why is None:
        return None
    if config.get("hf_hub"):
        repository, filenames = hub_files(config["hf_hub"])
        wanted = (f"{filenames[0]} of the Hugging Face repository {repository} "
                  f"(https://huggingface.co/{repository})")
        where = f"into the Hugging Face cache {hub_cache_dir()}"
    else:
        wanted, where = config["url"], f"into {URL_CACHE.expanduser()}"
    raise UserError(
        f"the {tag} weights of {architecture} are in no local cache and the network is "
        f"unreachable ({why}).\n  Fetch {wanted} {where}, e.g. on a login node: python -c "
        f"\"import open_clip; open_clip.create_model('{architecture}', pretrained='{tag}')\"\n"
        "  or download that file anywhere and pass --clip-weights PATH.")


def tag_preprocessing(architecture, tag):
    """open_clip's create_model_and_transforms options for the tag's image preprocessing (its
    mean, std, interpolation and resize mode), which a file alone does not carry."""
    from open_clip.pretrained import get_pretrained_cfg
    config = get_pretrained_cfg(architecture, tag)
    names = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
             "resize_mode": "image_resize_mode"}
    return {option: config[key] for key, option in names.items() if key in config}
