"""Simulated predictions shaped like real CLIP RN50 and DebiasPL runs on ImageNet100, for --demo.

Random weights send every image to one class, so the demo analyses these instead: ImageNet100's
100 classes (real wnids and CLIP names), 50 images each, and logits made the way CLIP makes
them, 100 x the cosine between unit image and class text embeddings of dimension 1,024:
- class text embeddings share a common direction (mean pairwise cosine about 0.75, as CLIP's
  do) and a component shared with classes of nearby ImageNet-1k index, so that neighbours in
  the hierarchy (dog breeds, snakes, birds) resemble each other and get confused, as real ones do;
- an image embedding is its class's text embedding (weighted by a per-class difficulty), plus
  isotropic noise, plus a shared "hub" direction along which the class text embeddings differ:
  that gives each class a logit offset, which makes CLIP over-predict some classes;
- DebiasPL: the same images with a stronger class signal, noise correlated with clip's and a
  weaker pull along the same hub direction, so its biases follow clip's at a smaller scale.
Tuned (seed 0) to a public homework solution's ImageNet100 numbers: clip about 0.79 top-1 with
predicted counts from about 88 down to 12, DebiasPL about 0.87 with about 80 down to 27.
Nothing here is measured from a model. numpy only, seeded, about half a second.
"""
import numpy as np

import classes
from cache import Predictions

DIMENSION = 1024
IMAGES_PER_CLASS = 50
LOGIT_SCALE = 100.0  # CLIP's logit_scale.exp()
# Squared lengths of a class text embedding's parts before normalising; the rest is its own.
COMMON_SHARE = 0.75
NEIGHBOURHOOD_SHARE = 0.17
NEIGHBOURHOOD_WIDTH = 12.0  # ImageNet-1k index distance over which classes resemble each other
HUB_SPREAD = 0.1  # standard deviation of a class text embedding's hub component
DIFFICULTY_SPREAD = 0.22  # a class's signal is scaled by exp(-DIFFICULTY_SPREAD x N(0, 1))
NOISE_CORRELATION = 0.6  # between clip's and DebiasPL's noise on the same image
# Per model: weights of the class signal and of the hub direction in an image embedding (the
# noise has unit length).
SIGNAL_AND_HUB = {"clip": (0.252, 0.068), "debiaspl": (0.272, 0.035)}


def unit(vectors):
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def text_embeddings(rng, imagenet_indices, dimension=DIMENSION):
    """[K, D] unit class embeddings and the unit hub direction [D]."""
    num_classes = len(imagenet_indices)
    common, hub = unit(rng.standard_normal((2, dimension)))
    hub = unit(hub - (hub @ common) * common)
    distance = np.subtract.outer(imagenet_indices, imagenet_indices).astype(float)
    kernel = np.exp(-(distance / NEIGHBOURHOOD_WIDTH) ** 2)
    # kernel's matrix square root mixes random vectors into rows whose inner products ≈ kernel.
    eigenvalues, eigenvectors = np.linalg.eigh(kernel)
    root = eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None)) @ eigenvectors.T
    neighbourhood = root @ rng.standard_normal((num_classes, dimension)) / np.sqrt(dimension)
    own = rng.standard_normal((num_classes, dimension)) / np.sqrt(dimension)
    hub_component = HUB_SPREAD * rng.standard_normal(num_classes)
    embeddings = (np.sqrt(COMMON_SHARE) * common + np.sqrt(NEIGHBOURHOOD_SHARE) * neighbourhood
                  + np.sqrt(1 - COMMON_SHARE - NEIGHBOURHOOD_SHARE) * own
                  + hub_component[:, None] * hub)
    return unit(embeddings), hub


def simulated_image_features(text, hub, labels, signal, hub_weight, noise):
    """Unit image embeddings: signal x class embedding + noise + hub; signal is per image."""
    return unit(signal[:, None] * text[labels] + noise + hub_weight * hub)


def simulated_logits(text, hub, labels, signal, hub_weight, noise):
    """LOGIT_SCALE x cosine of the image embeddings and the class embeddings."""
    features = simulated_image_features(text, hub, labels, signal, hub_weight, noise)
    return (LOGIT_SCALE * features @ text.T).astype(np.float32)


def simulated_predictions(seed=0):
    """{"clip": Predictions, "debiaspl": Predictions} over ImageNet100, their meta marked simulated."""
    rng = np.random.default_rng(seed)
    table = classes.read_imagenet100_table()  # sorted by wnid, as ImageFolder orders classes
    wnids = np.array([row["wnid"] for row in table])
    text, hub = text_embeddings(rng, np.array([int(row["imagenet1k_index"]) for row in table]))
    labels = np.repeat(np.arange(len(table)), IMAGES_PER_CLASS).astype(np.int64)
    difficulty = np.exp(-DIFFICULTY_SPREAD * rng.standard_normal(len(table)))[labels]
    # float32 for the [N, D] arrays: twice as fast as float64, and the cache holds float32.
    shared, own = (rng.standard_normal((len(labels), DIMENSION), dtype=np.float32) / np.sqrt(DIMENSION)
                   for _ in range(2))
    noises = {"clip": shared,
              "debiaspl": NOISE_CORRELATION * shared + np.sqrt(1 - NOISE_CORRELATION ** 2) * own}
    text, hub = text.astype(np.float32), hub.astype(np.float32)

    def simulated_run(model, signal, hub_weight):
        features = simulated_image_features(text, hub, labels, (signal * difficulty).astype(np.float32),
                                            hub_weight, noises[model])
        clip = model == "clip"  # a clip run keeps CLIP's features; DebiasPL's are a linear layer's
        return Predictions(
            logits=(LOGIT_SCALE * features @ text.T).astype(np.float32), labels=labels, wnids=wnids,
            names=np.array([row["clip_name"] for row in table]),
            paths=np.array([f"{wnids[label]}/simulated_{index:05d}.JPEG" for index, label in enumerate(labels)]),
            meta={"model": model, "simulated": True, "seed": seed,
                  "data": f"simulated: ImageNet100's classes, {IMAGES_PER_CLASS} images each",
                  "weights": "none (simulated logits)", **({"logit_scale": LOGIT_SCALE} if clip else {})},
            image_features=features if clip else None, text_features=text if clip else None)
    return {model: simulated_run(model, signal, hub_weight)
            for model, (signal, hub_weight) in SIGNAL_AND_HUB.items()}
