"""Hash banks benchmark: PDQ index lookups/s, memory and recall; image hashing CPU; bank load.

    .venv/bin/python scripts/bench_hash.py --sizes 1000000,10000000 --out hash.json

For each size it builds the PDQ index the worker builds from random PDQ hashes (random
hashes are the hard case for an index: nothing clusters), then looks up a mix of queries:
half are stored hashes with up to ``--distance`` bits flipped (each should match), half
random (none should). It reports lookups/s per thread count, the index's memory and the
process's resident memory, and recall against faiss's brute-force ``IndexBinaryFlat`` on a
sample. It also times PDQ hashing of images per image (from the file, and as the worker does
it: from the picture it decoded for the model), and loading a bank file of ``--load-lines``
PDQ lines through the worker's own loader. ``--sizes ''`` skips the indexes.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from PIL import Image

from worker.config import MediaSettings
from worker.hashbanks import load_banks, media_signals
from worker.hashbanks.pdq_index import PdqIndex
from worker.hashbanks.signals import PDQ, image_pdq
from worker.media.decode import decode


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def queries(codes: np.ndarray, count: int, distance: int, rng: np.random.Generator) -> np.ndarray:
    """Half near copies of stored hashes (0..distance bits flipped), half random hashes."""
    near = np.unpackbits(codes[rng.integers(0, len(codes), count // 2)], axis=1)
    for row, flips in zip(near, rng.integers(0, distance + 1, len(near)), strict=True):
        row[rng.choice(256, flips, replace=False)] ^= 1
    far = rng.integers(0, 256, size=(count - len(near), 32), dtype=np.uint8)
    mixed = np.concatenate([np.packbits(near, axis=1), far])
    return mixed[rng.permutation(len(mixed))]


def lookups_per_s(index: PdqIndex, qs: np.ndarray, batch: int, threads: int) -> tuple[float, float]:
    """Lookups per wall second, and per CPU second of this process (what a busy shared
    machine distorts least)."""
    index.search(qs[:batch], threads)  # compiles the probe loop once
    started, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, len(qs), batch):
        index.search(qs[lo : lo + batch], threads)
    return len(qs) / (time.perf_counter() - started), len(qs) / (time.process_time() - cpu)


def recall(index: PdqIndex, codes: np.ndarray, sample: np.ndarray) -> tuple[float, int, int]:
    """Share of brute force's matches the index finds, and the match counts of both."""
    flat = faiss.IndexBinaryFlat(256)
    flat.add(codes)
    limits, _, ids = flat.range_search(sample, index.distance + 1)
    truth = {(q, int(i)) for q in range(len(sample)) for i in ids[limits[q] : limits[q + 1]]}
    found = {(q, i) for q, hits in enumerate(index.search(sample)) for i, _ in hits}
    return (len(truth & found) / len(truth) if truth else 1.0), len(truth), len(found)


def bench_size(size: int, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    codes = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
    before = rss_mib()
    started = time.perf_counter()
    index = PdqIndex(codes, args.distance)
    built = time.perf_counter() - started
    result = {
        "hashes": size,
        "build_s": round(built, 1),
        "index_mib": round(index.nbytes / 2**20, 1),
        "rss_growth_mib": round(rss_mib() - before, 1),
        "substring_bits": index.sub_bits,
        "lookups_per_s": {},
        "lookups_per_cpu_s": {},
    }
    qs = queries(codes, args.queries, args.distance, rng)
    for threads in args.threads:
        wall, cpu = lookups_per_s(index, qs, args.batch * threads, threads)
        result["lookups_per_s"][str(threads)] = round(wall)
        result["lookups_per_cpu_s"][str(threads)] = round(cpu)
    share, truth, found = recall(index, codes, qs[: args.recall_sample])
    result.update(recall=share, brute_force_matches=truth, index_matches=found)
    return result


def bench_images(count: int, rng: np.random.Generator) -> dict:
    """CPU ms per image, by size: PDQ from the file (Pillow decode + pdqhash, what a list is
    built with), the worker's decode for the model, and the worker's hashing of the picture
    it decoded (``media_signals``: pdqhash alone, in the media step's decode pool)."""
    out = {}
    settings = MediaSettings()
    for width, height in ((640, 480), (1920, 1080)):
        coarse = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        encoded = io.BytesIO()
        picture.save(encoded, "JPEG", quality=85)
        data = encoded.getvalue()
        started = time.process_time()
        for _ in range(count):
            image_pdq(data)
        out[f"{width}x{height}_jpeg_ms"] = round((time.process_time() - started) / count * 1000, 2)
        started = time.process_time()
        for _ in range(count):
            frames = decode("image", data, settings).frames
        out[f"{width}x{height}_decode_ms"] = _ms_each(started, count)
        started = time.process_time()
        for _ in range(count):
            signals = media_signals("image", data, frames, {PDQ})
        out[f"{width}x{height}_hash_decoded_ms"] = _ms_each(started, count)
        assert signals.pdq == image_pdq(data)[0]
    return out


def _ms_each(started: float, count: int) -> float:
    return round((time.process_time() - started) / count * 1000, 2)


def bench_load(lines: int, rng: np.random.Generator) -> dict:
    """Seconds to load a bank file of ``lines`` PDQ lines, index included."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "big.yaml").write_text("policies: [any]\nlabel: 1\nsignal_type: pdq\n")
        codes = rng.integers(0, 256, size=(lines, 32), dtype=np.uint8)
        (directory / "big.txt").write_text("".join(row.tobytes().hex() + "\n" for row in codes))
        started = time.perf_counter()
        banks = load_banks(directory, 31)
        return {"lines": lines, "load_s": round(time.perf_counter() - started, 1),
                "pdq_hashes": banks.pdq_hashes}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=64, help="queries per search call")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--distance", type=int, default=31)
    parser.add_argument("--recall-sample", type=int, default=500)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--load-lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    faiss.omp_set_num_threads(1)  # the index's own threads are the ones measured
    rng = np.random.default_rng(args.seed)
    report: dict = {"distance": args.distance, "indexes": []}
    for size in (int(s) for s in args.sizes.split(",") if s):
        report["indexes"].append(bench_size(size, args, rng))
        print(json.dumps(report["indexes"][-1]), flush=True)
    if args.images:
        report["image_pdq_cpu"] = bench_images(args.images, rng)
        print(json.dumps(report["image_pdq_cpu"]), flush=True)
    if args.load_lines:
        report["bank_load"] = bench_load(args.load_lines, rng)
        print(json.dumps(report["bank_load"]), flush=True)
    report["peak_rss_mib"] = round(peak_mib())
    print(json.dumps({"peak_rss_mib": report["peak_rss_mib"]}))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
