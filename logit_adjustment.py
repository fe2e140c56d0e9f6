"""Training-free logit adjustment of cached logits: s - λ·log(prior), with two estimates of the
pseudo-label prior.

- DebiasPL's moving average (homework §2.2, clip-la): p̂ starts uniform and, batch after batch,
    p̂ <- m·p̂ + (1 - m)·(mean softmax probability, before debiasing, of the batch's images whose
                         maximum softmax probability is at least τ),
  and logits s are debiased as s - λ·log p̂ (Menon et al.'s logit adjustment with the pseudo-label
  prior in place of the label prior).
- Prior matching (clip-pm): the bias b for which the debiased soft predictions are balanced on
  average, mean_i softmax(s_i - b) = target (see match_prior).

Pure numpy (no torch), like metrics.py: it only ever runs on logits already cached.
"""
from dataclasses import dataclass

import numpy as np


def softmax(logits):
    """Row-wise softmax in float64; subtracting the row maximum keeps exp() from overflowing."""
    logits = np.asarray(logits, dtype=np.float64)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def shuffled_batches(num_images, batch_size, seed, passes=1):
    """Image indices in batches of `batch_size` (the last of a pass may be smaller), in a seeded
    random order, reshuffled for each of `passes` passes over the images.

    Cached logits are in ImageFolder order, sorted by class: unshuffled batches would each hold
    a single class and drag p̂ towards it. The last, smaller batch is kept (unlike DebiasPL's
    drop_last loader) so that every image is debiased in online mode.
    """
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(passes):
        order = rng.permutation(num_images)
        batches += [order[start:start + batch_size] for start in range(0, num_images, batch_size)]
    return batches


def confident_mean(probabilities, threshold):
    """Mean probability vector [K] of the images whose top probability is >= threshold; None if none.

    The mean runs over the selected images only. DebiasPL's update_qhat (masked_qhat branch)
    computes `probs * qhat_mask.unsqueeze(-1)` and never averages it, so its "mean" is a [B, K]
    matrix that broadcasts p̂ into a matrix; averaging the masked matrix over all B images instead
    would shrink p̂ by the fraction of confident images. Neither is a mean over the selection.
    """
    selected = probabilities[probabilities.max(axis=1) >= threshold]
    return selected.mean(axis=0) if len(selected) else None


@dataclass
class PriorEstimate:
    prior: np.ndarray  # float64 [K]: p̂ after the last batch
    batch_priors: np.ndarray  # float64 [B, K]: p̂ as each batch found it
    image_batch: np.ndarray  # int64 [N]: each image's batch (in the last pass)
    num_updating_batches: int  # batches with at least one confident image

    @property
    def num_batches(self):
        return len(self.batch_priors)

    @property
    def image_priors(self):
        """[N, K]: the p̂ each image is debiased with in online mode (built on demand: 400 MB at
        ImageNet-1k size)."""
        return self.batch_priors[self.image_batch]


def estimate_prior(logits, batches, momentum, threshold):
    """DebiasPL's moving-average pseudo-label prior over `batches` (lists of image indices).

    Online mode debiases each batch with p̂ as it is *before* that batch's update, as DebiasPL's
    training loop does for its pseudo-labels (main_DebiasPL_ZeroShot.py: causal_inference() with
    the current qhat, then update_qhat(); the updated qhat only enters the adaptive marginal loss
    on the strongly augmented view). So the first batch is debiased with the uniform prior, i.e.
    not at all.
    """
    logits = np.asarray(logits)
    num_classes = logits.shape[1]
    prior = np.full(num_classes, 1.0 / num_classes)
    batch_priors = np.empty((len(batches), num_classes))
    image_batch = np.full(len(logits), -1, dtype=np.int64)
    num_updating_batches = 0
    for batch_index, batch in enumerate(batches):
        batch_priors[batch_index] = prior
        image_batch[batch] = batch_index
        batch_mean = confident_mean(softmax(logits[batch]), threshold)
        if batch_mean is not None:
            prior = momentum * prior + (1 - momentum) * batch_mean
            num_updating_batches += 1
    if (image_batch < 0).any():
        raise ValueError("every image must be in a batch")
    return PriorEstimate(prior=prior, batch_priors=batch_priors, image_batch=image_batch,
                         num_updating_batches=num_updating_batches)


def adjust_logits(logits, prior, strength):
    """s - λ·log p̂ in float64; `prior` is one [K] vector for all images or an [N, K] row per image."""
    return np.asarray(logits, dtype=np.float64) - strength * np.log(prior)


@dataclass
class PriorMatch:
    bias: np.ndarray  # float64 [K], mean zero: debiased logits are s - bias
    iterations: int  # updates of the bias made
    deviation: float  # max_k |mean_i softmax(s_i - bias)_k - target_k| at the returned bias
    converged: bool  # deviation < tolerance


def log_mean_softmax(logits, bias):
    """log of mean_i softmax(s_i - bias) [K]: a logsumexp over classes, then one over images, so
    that no probability underflows to 0 however far a class lies below the others."""
    log_probabilities = logits - bias
    log_probabilities -= log_probabilities.max(axis=1, keepdims=True)
    log_probabilities -= np.log(np.exp(log_probabilities).sum(axis=1, keepdims=True))
    column_max = log_probabilities.max(axis=0)
    log_probabilities -= column_max
    return column_max + np.log(np.exp(log_probabilities, out=log_probabilities).mean(axis=0))


MATCH_TOLERANCE = 1e-9
MATCH_MAX_ITERATIONS = 10_000


def match_prior(logits, target=None, tolerance=MATCH_TOLERANCE, max_iterations=MATCH_MAX_ITERATIONS):
    """The class bias b with mean_i softmax(s_i - b) = target (uniform by default), by
    b <- b + log(mean_i softmax(s_i - b) / target) from b = 0, in float64 and the log domain,
    until the largest deviation from the target is below `tolerance` or after `max_iterations`.

    This is Sinkhorn-Knopp on the kernel softmax(s_i)_k with marginals 1/N per image and `target`
    per class: its column scaling is exp(-b), and the transport plan is softmax(s_i - b)_k / N.
    So the hard predictions argmax_k (s_ik - b_k) are those of entropic optimal transport with
    cost -log softmax(s_i)_k at ε = 1 (OTTER, Shi et al., NeurIPS 2024). The first update from
    b = 0 gives b = log(K·mean_i softmax(s_i)), DebiasPL's p̂ with every image, no momentum and
    one batch; prior matching re-estimates it from the debiased predictions until they are
    balanced: the fixed point that DebiasPL's moving average only approaches. The implied
    pseudo-label prior (the p̂ with s - log p̂ + log target = s - b up to a constant) is
    softmax(b + log target).
    """
    logits = np.asarray(logits, dtype=np.float64)
    num_classes = logits.shape[1]
    target = np.full(num_classes, 1.0 / num_classes) if target is None else np.asarray(target, dtype=np.float64)
    log_target = np.log(target)
    bias = np.zeros(num_classes)
    for iterations in range(max_iterations + 1):
        log_mean = log_mean_softmax(logits, bias)
        deviation = float(np.abs(np.exp(log_mean) - target).max())
        if deviation < tolerance or iterations == max_iterations:
            break
        bias += log_mean - log_target
    return PriorMatch(bias=bias - bias.mean(), iterations=iterations, deviation=deviation,
                      converged=deviation < tolerance)
