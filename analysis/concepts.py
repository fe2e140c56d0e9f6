"""Why the pseudo-labels are imbalanced: concept mismatch and concept confusion (the CAP paper,
§3.1, §3.2 and Appendix B), computed offline from a clip run's cached features.

Arrays in, arrays out: no file, no figure, no CLI. Inputs are a run's unit image embeddings
`image_features` [N, D] (possibly a read-only memory map of 1.28M rows, so anything that visits
every image goes row block by row block, never converting it whole to float64), the zero-shot
classifier's class text embeddings `text_features` [K, D], its logits [N, K] (= logit_scale x
image_features @ text_features.T) and the labels. numpy, scipy and scikit-learn only, no torch.
scipy.stats and sklearn.cluster are imported inside the functions that use them: together they
take ~2 s to import, and on import scipy's array-API check fails when torch is blocked as
sys.modules["torch"] = None (how test_layout proves a module torch-free).

Where the paper leaves a choice open, the docstring of the function that makes it says what was
chosen and why.
"""
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from runs import cache
import metrics
from analysis.pseudo_labels import top_probability

# Algorithm 1 and Appendix B.3 compare texts with cluster centres as CLIP compares texts with
# images: a softmax of 100 x cosine (CLIP's logit scale).
MATCH_SCALE = 100.0
MAX_DETECTION_IMAGES = 50_000  # above this, Algorithm 1 runs on a seeded sample of this size
# k-means++ starts of Algorithm 1's first clustering, from which the later ones start: 3 costs
# ~5 s more than scikit-learn's 1 for k-means++ at 5,000 x 1,024 and 100 clusters.
DETECTION_N_INIT = 3
# Changed whenever detect_mismatched_classes may give another result for the same inputs (2: the
# warm-started clusterings in float32): a detection saved by older code is then made anew.
DETECTION_VERSION = 2
CONFIDENCE_THRESHOLD = 0.85  # CAP's τ for the confident counts N_k
MARGIN_SCALE = 12.0  # CAP's λ in the imbalance degree D = λ (max r - min r)
TOP_PAIRS = 20
NEIGHBOURS = 10  # Figure 4's nearest centroids
SIGNIFICANCE = 0.05


def blocks_of(num_rows, num_columns):
    """cache.row_blocks at the block size cache.BLOCK_ELEMENTS holds now (read at each call, so a
    test can make the blocks small)."""
    return cache.row_blocks(num_rows, num_columns, cache.BLOCK_ELEMENTS)


def unit_rows(vectors):
    """Rows scaled to unit length, in float64; rows of zero length (or NaN) become NaN."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, vectors / norms, np.nan)


def cosine_matrix(rows, columns):
    """[len(rows), len(columns)] cosines between two sets of vectors; NaN where either is NaN."""
    return unit_rows(rows) @ unit_rows(columns).T


# 1. Visual prototypes and 2. the concept gap

def pseudo_labels_and_confidence(logits):
    """Each image's pseudo-label (arg-max of its logits) and its softmax probability, [N] int64
    and [N] float64, the logits read block by block."""
    predicted = np.empty(len(logits), dtype=np.int64)
    confidence = np.empty(len(logits), dtype=np.float64)
    for rows in blocks_of(*logits.shape):
        block = np.asarray(logits[rows])
        predicted[rows] = metrics.predicted_labels(block)
        confidence[rows] = top_probability(block)
    return predicted, confidence


def visual_prototypes(image_features, groups, num_classes):
    """[K, D] float64: each group's visual prototype, the unit-length mean of the embeddings of the
    images in it (`groups` = true labels or pseudo-labels); NaN rows for empty groups (zero sum).

    Sums are accumulated block by block in float64; a block's sum per group is its mean per group
    (metrics.class_centroids) times the group's size there."""
    groups = np.asarray(groups, dtype=np.int64)
    sums = np.zeros((num_classes, image_features.shape[1]))
    for rows in blocks_of(*image_features.shape):
        sizes = metrics.class_counts(groups[rows], num_classes)
        means = metrics.class_centroids(image_features[rows], groups[rows], num_classes)
        sums += np.nan_to_num(means) * sizes[:, None]
    return unit_rows(sums)


@dataclass
class ConceptGap:
    """How far each class's text embedding sits from its images (one grouping of the images)."""
    cosine: np.ndarray  # [K] cosine between class k's text embedding and its visual prototype
    nearest_text: np.ndarray  # [K] class whose text is nearest to class k's prototype; -1 if none
    own_text_nearest: np.ndarray  # [K] bool: nearest_text == k


def concept_gap(text_features, prototypes):
    """Each class's cosine between its text embedding and its visual prototype, and which class's
    text is nearest (highest cosine, ties to the lower index) to that prototype.

    A class without a prototype (no image in its group) has cosine NaN, nearest_text -1 and
    own_text_nearest False."""
    cosines = cosine_matrix(prototypes, text_features)  # [prototype k, text j]
    defined = ~np.isnan(cosines).any(axis=1)
    nearest = np.where(defined, np.argmax(np.nan_to_num(cosines, nan=-np.inf), axis=1), -1)
    return ConceptGap(cosine=np.diagonal(cosines).copy(), nearest_text=nearest,
                      own_text_nearest=nearest == np.arange(len(nearest)))


# 3. Concept-mismatch detection (Algorithm 1, Appendix B.1)

def most_confident_pair(texts, centres):
    """(text row, centre row) of the highest probability of softmax(100 x cosine) taken over the
    centres, for each text: the pair Algorithm 1 takes as well matched (ties: the higher cosine,
    then first in row-major order).

    Compared as log-probabilities, which rank the same: well-separated pairs have probabilities
    that all round to 1.0 in float64, and the ranking must not fall back on class order. With one
    centre every probability is 1 (Appendix B.3 on the last remaining cluster): the cosine
    decides."""
    scores = MATCH_SCALE * cosine_matrix(texts, centres)
    log_probability = scores - logsumexp(scores, axis=1, keepdims=True)
    best = np.lexsort((np.arange(scores.size), -scores.ravel(), -log_probability.ravel()))[0]
    return np.unravel_index(best, log_probability.shape)


def k_means(features, num_clusters, random_state, n_init, start=None):
    """Cluster labels [n] and centres [num_clusters, D] (float64) of scikit-learn's KMeans
    (Lloyd's iterations) on `features` in their own precision, seeded: from `n_init` k-means++
    starts, or from the centres `start` when given."""
    from sklearn.cluster import KMeans  # imported here: see the module docstring

    init = "k-means++" if start is None else np.asarray(start, dtype=features.dtype)
    n_init = n_init if start is None else 1
    fitted = KMeans(num_clusters, init=init, n_init=n_init, random_state=random_state).fit(features)
    return fitted.labels_, fitted.cluster_centers_.astype(np.float64)


def images_to_remove(members, predicted, confidence, matched_class, limit):
    """Appendix B.1: of the matched cluster's images (`members`, row indices), those predicted as
    the matched class, the `limit` most confident of them (ties to the lower row).

    Fewer than `limit` such images: all of them are removed (possibly none; the class is dropped
    all the same, as Algorithm 1 drops it whatever the cluster holds). More: only the `limit` most
    confident, so a cluster that also holds another class's images keeps them."""
    candidates = members[predicted[members] == matched_class]
    order = np.lexsort((candidates, -confidence[candidates]))
    return candidates[order[:limit]]


def detection_sample(num_images, max_images, random_state):
    """Sorted row indices Algorithm 1 runs on: all rows, or a seeded uniform sample of `max_images`
    when there are more (sorted, so a memory-mapped cache is read front to back)."""
    if num_images <= max_images:
        return np.arange(num_images)
    return np.sort(np.random.default_rng(random_state).choice(num_images, max_images, replace=False))


def least_predicted_classes(counts, fewest):
    """The classes with the `fewest` smallest counts, fewest first (ties by class index), less
    any group of equal counts that the cut would split: which of 98 classes predicted 50 times
    each is "among the fewest" would otherwise be decided by class index."""
    counts = np.asarray(counts)
    ranked = np.argsort(counts, kind="stable")
    at_most_as_many = np.searchsorted(np.sort(counts), counts[ranked], side="right")
    return ranked[at_most_as_many <= fewest]


@dataclass
class MismatchDetection:
    mismatched: np.ndarray  # concept-mismatched classes, fewest predictions first
    remaining_classes: np.ndarray  # classes left when the iterations stopped (ascending)
    matched_order: np.ndarray  # the classes Algorithm 1 matched, in the order it matched them
    remaining_images: np.ndarray  # rows of image_features left at the end (ascending)
    remaining_centres: np.ndarray  # [len(remaining_classes), D] K-means centres of those images
    num_images_used: int  # images Algorithm 1 ran on
    sampled: bool  # True when those are a seeded sample of the run's images


def detection_digest(image_features, text_features, predicted, confidence, *, random_state=0,
                     max_images=MAX_DETECTION_IMAGES):
    """sha256 (hex) of all that detect_mismatched_classes, given these arguments and its other
    defaults, depends on: the code's DETECTION_VERSION and settings, the rows it runs on and their
    features and confidences, the texts and every pseudo-label (the counts behind `fewest`). Equal
    digests, equal detections. Reads the sampled rows' features only, as the detection does."""
    rows = detection_sample(len(image_features), max_images, random_state)
    digest = hashlib.sha256(json.dumps({"version": DETECTION_VERSION, "seed": random_state,
                                        "n_init": DETECTION_N_INIT}).encode())
    for array in (rows, image_features[rows], text_features, predicted, np.asarray(confidence)[rows]):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()


def tenth_of_classes(num_classes):
    """One tenth of the classes, rounded up (at least 1): CAP found 2 mismatched classes of
    RESISC45's 45, 4 of DTD's 47 and 7 of Flowers102's 102, each within a tenth rounded up."""
    return max(1, math.ceil(num_classes / 10))


def detect_mismatched_classes(image_features, text_features, predicted, confidence, *,
                              stop_at=None, fewest=None, n_init=DETECTION_N_INIT, warm_start=True,
                              random_state=0, max_images=MAX_DETECTION_IMAGES):
    """Algorithm 1 of CAP: which classes' text embeddings miss their images.

    While more than `stop_at` classes remain (default: a tenth of the K classes, rounded up): run
    K-means (one cluster per remaining class, seeded, see "Clustering" below) on the remaining
    images; take the (class, cluster) pair of highest softmax(100 x cosine between the remaining
    class texts and the cluster centres, over the clusters) as well matched; remove up to
    m = ceil(n / K) of that cluster's images predicted as that class, the most confident first
    (Appendix B.1, see images_to_remove; n = images used); drop the class. Then the remaining
    images are clustered once more, one cluster per remaining class, for Appendix B.3's choice.

    The mismatched classes are the remaining classes that are also among the `fewest` least
    predicted classes of the whole run (CAP's C_rem ∩ C_few; default: a tenth of the classes,
    rounded up, like the stop rule: a class is called mismatched when it is both among the last
    tenth left unmatched and among the tenth least predicted; see least_predicted_classes for
    ties).

    `predicted` and `confidence` [N] are the run's pseudo-labels and their softmax probability
    (pseudo_labels_and_confidence). Above `max_images` images, Algorithm 1 runs on a seeded uniform
    sample of that many (`sampled` says so); the counts behind `fewest` are always the whole run's.

    Clustering (the paper says only "K-means"): with `warm_start` (the default), the first
    clustering is the lowest-inertia of `n_init` k-means++ starts and each later one runs Lloyd's
    iterations from the previous centres less the matched cluster's, the clustering that the
    removal just changed; every clustering is still a K-means solution of the remaining images with
    one cluster per remaining class. Without it, every clustering starts afresh from `n_init`
    k-means++ starts: ~6x slower (160 s instead of 20-40 s for ImageNet100's 5,000 x 1,024 and 100
    classes on 2 busy cores, with n_init = 1, both in float64; warm starts in float32 now take
    6-13 s), the same planted classes found in our tests. Cost grows as n x K^2 x D (K
    clusterings of K clusters). k-means++ gets the features as float64
    (400 MB at 50,000 x 1,024): scikit-learn's k-means++ on float32 recomputes its distances in
    float64 chunks and is ~6x slower. The warm-started clusterings, nearly all of the cost, get
    them as float32 (200 MB), in which Lloyd's iterations are ~1.7x faster: on the demo's 5,000
    x 1,024 the same classes are matched in the same order and the same ones found. The centres
    are compared with the texts in float64 either way. Deterministic for a given `random_state`.
    """
    num_classes = len(text_features)
    stop_at = tenth_of_classes(num_classes) if stop_at is None else stop_at
    fewest = tenth_of_classes(num_classes) if fewest is None else fewest
    predicted = np.asarray(predicted, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float64)
    rows = detection_sample(len(image_features), max_images, random_state)
    features = np.asarray(image_features[rows], dtype=np.float64)  # for k-means++
    limit = math.ceil(len(rows) / num_classes)

    remaining_images = np.arange(len(rows))  # positions in `features`
    remaining_classes = np.arange(num_classes)
    matched_order = []
    centres = None
    while len(remaining_classes) > stop_at:
        clusters, centres = k_means(features[remaining_images], len(remaining_classes),
                                    random_state, n_init, centres if warm_start else None)
        if warm_start:  # every later clustering starts from these centres: Lloyd's alone
            features = features.astype(np.float32, copy=False)
        text_row, cluster = most_confident_pair(text_features[remaining_classes], centres)
        matched_class = remaining_classes[text_row]
        removed = images_to_remove(remaining_images[clusters == cluster], predicted[rows],
                                   confidence[rows], matched_class, limit)
        remaining_images = np.setdiff1d(remaining_images, removed)
        remaining_classes = np.delete(remaining_classes, text_row)
        matched_order.append(matched_class)
        centres = np.delete(centres, cluster, axis=0)

    _, remaining_centres = k_means(features[remaining_images], len(remaining_classes),
                                   random_state, n_init, centres if warm_start else None)
    least_predicted = least_predicted_classes(metrics.class_counts(predicted, num_classes), fewest)
    mismatched = least_predicted[np.isin(least_predicted, remaining_classes)]
    return MismatchDetection(
        mismatched=mismatched, remaining_classes=remaining_classes,
        matched_order=np.array(matched_order, dtype=np.int64),
        remaining_images=rows[remaining_images], remaining_centres=remaining_centres,
        num_images_used=len(rows), sampled=len(rows) < len(image_features))


# 4. Concept confusion (§3.2): the confusion-aware calibrated margin

SIMILARITY_KINDS = ("max", "text", "visual")


def class_similarity(text_features, prototypes, kind="max"):
    """[K, K] class similarity S. "max" (CAP's Eq. 2, the default): the element-wise maximum of
    the text-text cosines and the visual-prototype cosines; where a prototype is undefined (a class
    nobody predicted), the text cosine alone. "text" or "visual": one of the two alone (NaN where
    a prototype is undefined)."""
    if kind not in SIMILARITY_KINDS:
        raise ValueError(f"kind must be one of {SIMILARITY_KINDS}, not {kind!r}")
    text = cosine_matrix(text_features, text_features)
    visual = cosine_matrix(prototypes, prototypes)
    return {"max": np.fmax(text, visual), "text": text, "visual": visual}[kind]


def confident_counts(predicted, confidence, num_classes, threshold=CONFIDENCE_THRESHOLD):
    """N_k [K]: images predicted as class k with softmax probability >= `threshold` (CAP's Eq. 3,
    τ = 0.85)."""
    confident = np.asarray(confidence) >= threshold
    return metrics.class_counts(np.asarray(predicted)[confident], num_classes)


def prediction_tendency(counts):
    """r_k = N_k / max_j N_j (CAP's Eq. 4); all zeros when no class has a confident image (no
    tendency to correct)."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts / max(counts.max(), 1.0)


def imbalance_degree(tendency, scale=MARGIN_SCALE):
    """D = λ (max r - min r) (CAP's Eq. 5, λ = 12)."""
    return float(scale * (np.max(tendency) - np.min(tendency)))


def calibrated_margin(similarity, tendency, degree):
    """M[k, j] = (1 - r_k) / (1 + r_k) · D · S[k, j] (CAP's Eqs. 6-7), 0 on the diagonal.

    In CAP's loss M[k, j] is added to logit j of an image labelled k: it pushes class k's images
    away from class j, the more so the rarer k's confident predictions and the more similar j.
    An undefined (NaN) similarity gives no margin."""
    tendency = np.asarray(tendency, dtype=np.float64)
    margin = ((1 - tendency) / (1 + tendency) * degree)[:, None] * np.nan_to_num(similarity)
    np.fill_diagonal(margin, 0.0)
    return margin


def largest_margin_pairs(margin, count=TOP_PAIRS):
    """The `count` (k, j) pairs of largest positive margin, largest first (ties by k, then j):
    images of class k that CAP's margin pushes hardest away from class j. ([count] k, [count] j)"""
    rows, columns, _ = metrics.largest_confusions(margin, count)
    return rows, columns


def coinciding_pairs(margin_pairs, confusion_pairs):
    """How many (k, j) pairs are in both lists, each a (rows, columns) pair of index arrays.

    Ordered pairs: margin pair (k, j) acts on images of class k against class j, which is exactly
    the confusion (true k, predicted j); the reverse confusion (true j, predicted k) is a flow the
    margin on (k, j) does not address, so it does not count."""
    return len(set(zip(*map(np.ravel, margin_pairs))) & set(zip(*map(np.ravel, confusion_pairs))))


# 5. Figure 4's claim: rarely predicted classes have close centroid neighbours

def neighbour_cosine_means(centroid_cosine, neighbours=NEIGHBOURS):
    """[K] mean cosine of each class's `neighbours` nearest other centroids (fewer when fewer are
    defined); NaN for a class without a centroid or without any other defined centroid."""
    cosine = np.array(centroid_cosine, dtype=np.float64)
    np.fill_diagonal(cosine, np.nan)
    nearest_first = -np.sort(-np.nan_to_num(cosine, nan=-np.inf), axis=1)[:, :neighbours]
    defined = np.isfinite(nearest_first)
    with np.errstate(invalid="ignore"):
        return np.where(defined, nearest_first, 0.0).sum(axis=1) / defined.sum(axis=1)


def average_ranks(values):
    """1-based ranks of `values`, ties sharing their mean rank (scipy.stats.rankdata's default)."""
    order = np.argsort(values, kind="stable")
    _, tie_group, group_sizes = np.unique(np.asarray(values)[order], return_inverse=True,
                                          return_counts=True)
    group_ranks = np.bincount(tie_group, np.arange(1, len(values) + 1)) / group_sizes
    ranks = np.empty(len(values))
    ranks[order] = group_ranks[tie_group]
    return ranks


def spearman(x, y):
    """(rho, two-sided p) as scipy.stats.spearmanr gives them (Student's t with n - 2 degrees of
    freedom), without scipy.stats: the analysis of every run computes it, and importing
    scipy.stats would cost it ~1 s."""
    from scipy.special import stdtr
    rho = np.corrcoef(average_ranks(x), average_ranks(y))[0, 1]
    degrees = len(x) - 2
    with np.errstate(divide="ignore"):  # |rho| = 1: t is infinite, p is 0
        t = rho * np.sqrt(degrees / ((1.0 + rho) * (1.0 - rho)))
    return float(rho), float(2 * stdtr(degrees, -np.abs(t)))


@dataclass
class ClaimTest:
    rho: float  # Spearman correlation, predicted count vs mean neighbour cosine
    p_value: float
    num_classes: int  # classes with a centroid and neighbours, those correlated
    supported: bool  # rho < 0 and p < 0.05
    sentence: str


def figure4_claim(predicted_counts, centroid_cosine, neighbours=NEIGHBOURS):
    """Test "the less frequently predicted classes usually have strong inter-class correlations,
    while the most frequently predicted classes are the opposite": the Spearman correlation
    between each class's predicted count and the mean cosine of its `neighbours` nearest centroids
    (`centroid_cosine` [K, K], NaN where a centroid is undefined; self excluded), over the classes
    whose mean is defined. Supported when rho < 0 with p < 0.05 (two-sided)."""
    means = neighbour_cosine_means(centroid_cosine, neighbours)
    kept = ~np.isnan(means)
    counts = np.asarray(predicted_counts, dtype=np.float64)[kept]
    num_classes = int(kept.sum())
    rho, p_value = np.nan, np.nan
    if num_classes >= 3 and np.ptp(counts) > 0 and np.ptp(means[kept]) > 0:
        rho, p_value = spearman(counts, means[kept])
    supported = bool(rho < 0 and p_value < SIGNIFICANCE)
    sentence = (f"Figure 4's claim (the less often a class is predicted, the closer its "
                f"{neighbours} nearest centroids) is {'supported' if supported else 'not supported'} "
                f"on this run: Spearman rho = {rho:.3f}, p = {p_value:.2g}, n = {num_classes} classes"
                f" (supported means rho < 0 and p < {SIGNIFICANCE}).")
    return ClaimTest(rho=rho, p_value=p_value, num_classes=num_classes, supported=supported,
                     sentence=sentence)


# 6. clip-ca: concept-aligned text embeddings (Appendix B.3, WordNet synonyms for descriptions)

def best_candidate(candidate_text, centres):
    """Index of the candidate text embedding [C, D] that best matches one of the `centres` (the
    K-means centres of the images Algorithm 1 left): Appendix B.3's rule, the candidate of the
    (candidate, centre) pair of highest softmax(100 x cosine) over the centres, as Algorithm 1
    matches a class. A candidate close to one centre and far from the others wins over one
    merely close to all of them."""
    return int(most_confident_pair(candidate_text, centres)[0])


def logit_blocks(image_features, text_features, logit_scale):
    """float32 row blocks of logit_scale x image_features @ text_features.T (the zero-shot logits
    with these class embeddings), for cache.write_predictions."""
    text = np.asarray(text_features, dtype=np.float32).T
    for rows in blocks_of(len(image_features), max(image_features.shape[1], len(text_features))):
        yield np.float32(logit_scale) * (np.asarray(image_features[rows], dtype=np.float32) @ text)
