"""Reference for `cxr8 bench cache`: the same decode + grayscale + Lanczos resize in Python PIL.

Decodes every PNG/JPEG in a folder, converts it to 8-bit grayscale ("L") and resizes it to
SIZE x SIZE with Image.LANCZOS, with PROCESSES worker processes (a multiprocessing pool, since
PIL work holds the GIL for much of decoding). Prints one JSON object with the best of REPEAT
timed passes, after one untimed warm-up pass that also starts the pool.
"""

import argparse
import json
import multiprocessing
import os
import sys
import time

from PIL import Image, __version__ as pil_version


def decode_resize(args):
    path, size = args
    with Image.open(path) as image:
        resized = image.convert("L").resize((size, size), Image.LANCZOS)
    # Touch the result so nothing is left lazy; our side writes into a buffer and returns nothing.
    return resized.size[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    names = sorted(n for n in os.listdir(args.images) if n.lower().endswith((".png", ".jpg", ".jpeg")))
    if not names:
        sys.exit(f"no PNG/JPEG files in {args.images}")
    jobs = [(os.path.join(args.images, n), args.size) for n in names]
    chunk = max(1, len(jobs) // (args.processes * 4))

    times = []
    if args.processes <= 1:
        run = lambda: [decode_resize(job) for job in jobs]
        run()
        for _ in range(args.repeat):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    else:
        with multiprocessing.Pool(args.processes) as pool:
            pool.map(decode_resize, jobs, chunksize=chunk)
            for _ in range(args.repeat):
                start = time.perf_counter()
                pool.map(decode_resize, jobs, chunksize=chunk)
                times.append(time.perf_counter() - start)

    best = min(times)
    print(json.dumps({
        "images": len(jobs),
        "processes": args.processes,
        "pil_version": pil_version,
        "python": sys.version.split()[0],
        "seconds_best": best,
        "seconds_all": times,
        "images_per_sec": len(jobs) / best,
    }))


if __name__ == "__main__":
    main()
