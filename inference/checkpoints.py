"""Weight files read without running their code: torch.load restricted to tensors and the
harmless types real checkpoints carry (unless --trust-checkpoint), OpenAI's TorchScript archives
through torch.jit, and .safetensors files. torch is imported inside the functions."""
from pathlib import Path

import numpy as np

from runs.outputs import UserError


def checkpoint_safe_globals():
    """Non-tensor types that real training checkpoints carry and that run no code: numpy scalars
    (e.g. a best_acc1 saved as np.float64, under numpy 2's and numpy 1's module names) and dtypes."""
    scalar = np.dtype("f8").type(0).__reduce__()[0]  # numpy._core.multiarray.scalar
    dtype_classes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtype_classes]


def read_checkpoint(path, what, trust=False):
    """torch.load that runs no code from the file unless the user trusts it (--trust-checkpoint)."""
    import pickle
    import re
    import zipfile
    import torch
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"the {what} {path} does not exist.")
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            # Memory-mapped where torch can (its zip format): a file read only for its shapes
            # (check_clip_choice) costs nothing, and a loaded one no second copy in memory.
            return torch.load(path, map_location="cpu", weights_only=not trust,
                              mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL ([\w.]+)", str(error))
        if refused:
            raise UserError(f"the {what} {path} holds a Python object ({refused.group(1)}) that "
                            "loading would have to run code to rebuild, so it was not loaded; pass "
                            "--trust-checkpoint only if you trust where the file came from.") from None
        raise UserError(f"{path} is not a readable PyTorch {what} ({error}).") from None
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is not a readable PyTorch {what} ({reason}).") from None


def is_torchscript_archive(path):
    """Whether `path` is a TorchScript archive (OpenAI's RN50.pt...): a zip holding compiled code."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/__torch__" in name for name in archive.namelist())


def read_clip_state_dict(path, trust=False):
    """An open_clip-layout state dict from OpenAI's TorchScript .pt, a .safetensors file or a
    torch.save'd file (a bare state dict or {"state_dict": ...}, "module." prefixes removed)."""
    import torch
    import warnings
    path = Path(path).expanduser()
    if path.is_file() and is_torchscript_archive(path):
        # torch.jit.load reads OpenAI's archive without unpickling Python objects. Its state dict
        # has open_clip's key layout plus three int buffers; open_clip's own jit=True export adds
        # the text attention mask, which open_clip rebuilds.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, yet OpenAI ships it
            state_dict = torch.jit.load(str(path), map_location="cpu").state_dict()
        for key in ("input_resolution", "context_length", "vocab_size", "attn_mask"):
            state_dict.pop(key, None)
        return state_dict
    if path.is_file() and path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            state_dict = load_file(path)
        except (SafetensorError, OSError) as error:
            raise UserError(f"{path} is not a readable safetensors file ({error}).") from None
    else:
        checkpoint = read_checkpoint(path, "CLIP weights file", trust)
        state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state_dict, dict):
            raise UserError(f"{path} holds no state dict.")
    return {key.removeprefix("module."): value for key, value in state_dict.items()}
