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

    def priors_of(self, images):
        """[len(images), K]: the p̂ each of these images is debiased with in online mode."""
        return self.batch_priors[self.image_batch[images]]

    @property
    def image_priors(self):
        """[N, K]: priors_of every image (5 GB at ImageNet-1k's training set: a run reads
        priors_of a block of rows at a time)."""
        return self.priors_of(slice(None))


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
    return shift_logits(logits, np.log(prior), strength)


def shift_logits(logits, log_prior, strength):
    """s - λ·log p̂ from log p̂ (computed once for several λ)."""
    return np.asarray(logits, dtype=np.float64) - strength * log_prior


@dataclass
class PriorMatch:
    bias: np.ndarray  # float64 [K], mean zero: debiased logits are s - bias
    iterations: int  # updates of the bias made
    deviation: float  # max_k |mean_i softmax(s_i - bias)_k - target_k| at the returned bias
    converged: bool  # deviation < tolerance
    passes: int  # passes over the logits: the first look, one per update, one per rejected step


@dataclass
class SoftmaxPass:
    """What one pass over the logits at a bias b tells match_prior."""
    log_mean: np.ndarray  # [K] log mean_i softmax(s_i - b)
    objective: float  # mean_i logsumexp(s_i - b) + b·target: the convex dual match_prior minimises
    deviation: float  # max_k |mean_i softmax(s_i - b)_k - target_k|
    second_moment: np.ndarray = None  # [K, K] mean_i p_i p_iᵀ, p_i = softmax(s_i - b), if asked


# Below this, a class's softmax summed over a block is summed again in the log domain (a
# logsumexp over the images), so that none underflows to 0 however far it lies below the others.
LOG_DOMAIN_BELOW = 1e-280


def log_column_sums(shifted, log_row_sums, probabilities):
    """log sum_i p_ik [K] over a block's images, exact also for sums too small for float64;
    `shifted` - `log_row_sums` are the block's log probabilities."""
    sums = probabilities.sum(axis=0)
    tiny = np.flatnonzero(sums < LOG_DOMAIN_BELOW)
    with np.errstate(divide="ignore"):
        log_sums = np.log(sums)
    if len(tiny):
        part = shifted[:, tiny] - log_row_sums
        part_max = part.max(axis=0)
        log_sums[tiny] = part_max + np.log(np.exp(part - part_max).sum(axis=0))
    return log_sums


def softmax_pass(logits, bias, target, blocks, second_moment=False):
    """SoftmaxPass at `bias`, the logits read in row `blocks`, each in float64. The second moment
    (the dual's curvature) only shapes Newton's step: its off-diagonal part is summed from float32
    products (BLAS syrk, half the time of float64), its diagonal exactly."""
    num_classes = logits.shape[1]
    log_sums = np.full(num_classes, -np.inf)
    objective = 0.0
    moment = np.zeros((num_classes, num_classes)) if second_moment else None
    diagonal = np.zeros(num_classes)
    for rows in blocks:
        shifted = np.subtract(logits[rows], bias, dtype=np.float64)
        row_max = shifted.max(axis=1, keepdims=True)
        shifted -= row_max
        probabilities = np.exp(shifted)
        row_sums = probabilities.sum(axis=1, keepdims=True)
        probabilities /= row_sums
        log_row_sums = np.log(row_sums)
        objective += float(np.sum(row_max + log_row_sums))
        log_sums = np.logaddexp(log_sums, log_column_sums(shifted, log_row_sums, probabilities))
        if second_moment:
            single = probabilities.astype(np.float32)
            moment += single.T @ single  # an array times its own transpose: BLAS syrk
            diagonal += np.einsum("ij,ij->j", probabilities, probabilities)
    count = len(logits)
    log_mean = log_sums - np.log(count)
    if second_moment:
        moment[np.diag_indices(num_classes)] = diagonal
        moment /= count
    return SoftmaxPass(log_mean=log_mean, objective=objective / count + float(bias @ target),
                       deviation=float(np.abs(np.exp(log_mean) - target).max()),
                       second_moment=moment)


def newton_step(state, target):
    """Newton's step Δ (b ← b + Δ) towards log mean_i softmax(s_i - b) = log target, or None
    where it cannot be solved for.

    With m = mean_i p_i, the Hessian of the dual is H = diag(m) - mean_i p_i p_iᵀ, and
    log m(b + Δ) ≈ log m - diag(1/m)·H·Δ. So H·Δ = m ⊙ (log(m/t) - KL(m‖t)): the KL term makes
    the right side sum to 0, as H's range (⊥ 1: b + c leaves every softmax unchanged) requires.
    A class far from every image gets Sinkhorn's log step; near the fixed point this is Newton's
    method on the dual, converging quadratically where Sinkhorn's steps shrink with the
    softmax's confidence. It is solved scaled by √m, where H's null direction √m is filled in."""
    mean = np.exp(state.log_mean)
    if not np.all(mean > 0):
        return None
    root = np.sqrt(mean)
    scaled = np.eye(len(mean)) - state.second_moment / np.outer(root, root) + np.outer(root, root)
    log_ratio = state.log_mean - np.log(target)
    try:
        step = np.linalg.solve(scaled, root * (log_ratio - mean @ log_ratio)) / root
    except np.linalg.LinAlgError:
        return None
    return step if np.all(np.isfinite(step)) else None


MATCH_TOLERANCE = 1e-9
MATCH_MAX_ITERATIONS = 10_000
NEWTON_STEP_SCALES = (1.0, 0.25, 0.0625)  # tried in turn before falling back to Sinkhorn's step
DUAL_RESOLUTION = 1e-12  # relative: smaller changes of the dual are rounding (it is ~|logits|)


def improves(trial, state):
    """Whether a trial step is taken: the dual falls beyond rounding, or, where it is flat to
    rounding (near the fixed point), the deviation falls."""
    resolution = DUAL_RESOLUTION * max(1.0, abs(state.objective))
    if trial.objective < state.objective - resolution:
        return True
    return trial.objective <= state.objective + resolution and trial.deviation < state.deviation


def candidate_steps(state, target, first):
    """(step, always taken) pairs to try in turn: Sinkhorn's step b ← b + log(m / target) alone
    for the first update, then Newton's step at NEWTON_STEP_SCALES and Sinkhorn's (which never
    increases the dual) when none of them improves."""
    newton = None if first else newton_step(state, target)
    if newton is not None:
        for scale in NEWTON_STEP_SCALES:
            yield scale * newton, False
    yield state.log_mean - np.log(target), True


def match_prior(logits, target=None, tolerance=MATCH_TOLERANCE, max_iterations=MATCH_MAX_ITERATIONS,
                blocks=None):
    """The class bias b with mean_i softmax(s_i - b) = target (uniform by default), from b = 0,
    in float64 and the log domain, until the largest deviation from the target is below
    `tolerance` or after `max_iterations` updates. `blocks` are the row slices the logits are
    read in (memory-mapped ones: see analysis.blocks_of); by default all rows at once.

    This is the fixed point of Sinkhorn-Knopp on the kernel softmax(s_i)_k with marginals 1/N per
    image and `target` per class: its column scaling is exp(-b), and the transport plan is
    softmax(s_i - b)_k / N. So the hard predictions argmax_k (s_ik - b_k) are those of entropic
    optimal transport with cost -log softmax(s_i)_k at ε = 1 (OTTER, Shi et al., NeurIPS 2024).
    The first update is Sinkhorn's, b = log(K·mean_i softmax(s_i)): DebiasPL's p̂ with every
    image, no momentum and one batch; prior matching re-estimates it from the debiased
    predictions until they are balanced, the fixed point that DebiasPL's moving average only
    approaches. Sinkhorn's update b ← b + log(mean_i softmax(s_i - b) / target) needs hundreds
    to thousands of passes over the images when the softmax is confident, so the later updates
    are Newton's steps on the same fixed point (newton_step), each taken only where it lowers
    the dual (else Sinkhorn's): a handful of passes. The implied pseudo-label prior (the p̂ with
    s - log p̂ + log target = s - b up to a constant) is softmax(b + log target).
    """
    num_classes = logits.shape[1]
    target = np.full(num_classes, 1.0 / num_classes) if target is None else np.asarray(target, dtype=np.float64)
    blocks = [slice(None)] if blocks is None else list(blocks)
    bias = np.zeros(num_classes)
    state = softmax_pass(logits, bias, target, blocks)
    iterations, passes = 0, 1
    while state.deviation >= tolerance and iterations < max_iterations:
        for step, always_taken in candidate_steps(state, target, first=iterations == 0):
            trial = softmax_pass(logits, bias + step, target, blocks, second_moment=True)
            passes += 1
            if always_taken or improves(trial, state):
                break
        bias, state = bias + step, trial
        iterations += 1
    return PriorMatch(bias=bias - bias.mean(), iterations=iterations, deviation=state.deviation,
                      converged=state.deviation < tolerance, passes=passes)
