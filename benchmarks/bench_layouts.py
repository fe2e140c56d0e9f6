"""What the layout of the data costs: images/s of each layout (ImageFolder, webdataset shards,
parquet, flat + labels) on the same images, read, decoded and transformed as inference does (the
DataLoader over engine.IndexedImages with CLIP RN50's transform, no model), and the time and
peak memory to index the shards of a simulated ImageNet-1k training set (1,000 shards of 1,281
samples; each shard is a hard link to one written shard, so the index reads headers from the
page cache: the CPU's cost, not a cold shared file system's).

    python benchmarks/bench_layouts.py                       # 2,000 images, 1,000 shards
    python benchmarks/bench_layouts.py --images 20 --shards 3 --per-shard 10   # smoke test
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo import layouts, synthetic  # noqa: E402
from sources import samples  # noqa: E402

CLASSES = 10


def write_layouts(root, images):
    """{layout: (source)} of the same `images` JPEGs in the four layouts."""
    per_class = images // CLASSES
    synthetic.write_image_folder(root / "folder" / "val", [f"class_{k:02d}" for k in range(CLASSES)],
                                 per_class, seed=0, size=(500, 375))  # ImageNet's typical size
    rows = layouts.folder_samples(root / "folder" / "val")
    shard_size = max(1, len(rows) // 4)
    layouts.write_shards(rows, root / "shards" / "val",
                         [shard_size] * 3 + [len(rows) - 3 * shard_size])
    layouts.write_parquet(rows, root / "parquet" / "data", "validation", files=2, row_group_size=100)
    layouts.write_flat(rows, root / "flat", root / "labels.csv")
    return {"folder": (root / "folder", None), "shards": (root / "shards", None),
            "parquet": (root / "parquet", None), "flat": (root / "flat", root / "labels.csv")}


def clip_transform():
    """CLIP RN50's eval transform (224 x 224, OpenAI's mean and std), without building a model."""
    import open_clip
    return open_clip.image_transform(224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                     std=open_clip.OPENAI_DATASET_STD)


def peak_memory_mb():
    """This process's peak resident memory since it started (VmHWM: unlike ru_maxrss, not the
    parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def images_per_second(source, transform, workers, batch_size=64):
    import torch
    from inference import engine
    loader = torch.utils.data.DataLoader(engine.IndexedImages(source, transform), batch_size=batch_size,
                                         num_workers=workers, collate_fn=engine.collate_indexed)
    start = time.perf_counter()
    count = sum(len(images) for images, *_ in loader)
    return count / (time.perf_counter() - start)


def measure_layouts(images, workers):
    with tempfile.TemporaryDirectory(prefix="bench-layouts-") as scratch:
        datasets = write_layouts(Path(scratch), images)
        transform = clip_transform()
        print(f"=== {images} JPEGs of 500 x 375 in 4 layouts; DataLoader, batch 64, {workers} "
              "worker(s), CLIP RN50's transform, no model ===")
        print(f"{'layout':<10}{'index (s)':>12}{'images/s':>12}")
        for layout, (data, labels) in datasets.items():
            start = time.perf_counter()
            _, source = samples.open_source(data, None, labels, Path(scratch) / "cache")
            indexed = time.perf_counter() - start
            rate = images_per_second(source, transform, workers)
            print(f"{layout:<10}{indexed:>12.3f}{rate:>12.1f}")


def index_shards(folder, shards):
    """Run in a fresh process (so that its peak memory is the index's): index the shards; with 0
    shards, the same process's peak with nothing indexed."""
    if not shards:
        print(f"(the same process indexing nothing peaks at {peak_memory_mb():.0f} MB)")
        return
    start = time.perf_counter()
    _, source = samples.open_source(f"{folder}/{{0..{shards - 1}}}.tar")
    seconds = time.perf_counter() - start
    peak_mb = peak_memory_mb()
    print(f"indexed {len(source):,} samples of {shards} shards in {seconds:.1f} s; peak memory "
          f"{peak_mb:.0f} MB (the process, Python and numpy included); index "
          f"{sum(array.nbytes for array in (source.shard_of, source.offsets, source.sizes, source.members, source.labels)) / 1e6:.0f} MB")


def measure_indexing(shards, per_shard):
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as scratch:
        folder = Path(scratch)
        rows = [("c", f"{i}.jpg", b"\xff\xd8" + bytes(62), i % 1000) for i in range(per_shard)]
        first = layouts.write_shards(rows, folder / "one", [per_shard])[0]
        for number in range(shards):
            os.link(first, folder / f"{number}.tar")
        print(f"=== index {shards} shards x {per_shard} samples ({shards * per_shard:,} images; "
              f"{first.stat().st_size / 1e6:.1f} MB a shard, page cache warm) ===")
        subprocess.run([sys.executable, __file__, "--index-only", str(folder), "0"], check=True,
                       timeout=600)
        subprocess.run([sys.executable, __file__, "--index-only", str(folder), str(shards)],
                       check=True, timeout=3000)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEGs written in every layout")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--shards", type=int, default=1000, help="shards of the indexing measurement")
    parser.add_argument("--per-shard", type=int, default=1281, help="samples per shard (1.28M / 1,000)")
    parser.add_argument("--index-only", nargs=2, metavar=("FOLDER", "SHARDS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.index_only:
        index_shards(args.index_only[0], int(args.index_only[1]))
        return
    measure_layouts(args.images, args.workers)
    measure_indexing(args.shards, args.per_shard)


if __name__ == "__main__":
    main()
