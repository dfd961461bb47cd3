#!/usr/bin/env python3
"""The fewest bytes a raw image must allocate to hold random writes in at
most E extents (docs/writeback.md, "Few extents and a sparse image").

A raw image maps device offsets to file offsets one to one, so every hole
left between two data runs ends an extent: extents = unfilled inner holes
+ 1. The cheapest way to at most E extents fills every inner hole but the
E - 1 largest with zeros. This prints that allocation for uniformly random
block writes, the harness's W1:

    python3 bench/lib/extent_bound.py --size 4G --written 1.37G
"""

import argparse
import random


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1].upper() in units:
        return int(float(s[:-1]) * units[s[-1].upper()])
    return int(s)


def holes(blocks):
    """Lengths of the holes between data runs of a 0/1 block map, and the
    number of blocks with data."""
    out, gap, seen, data = [], 0, False, 0
    for b in blocks:
        if b:
            if seen and gap:
                out.append(gap)
            seen, gap = True, 0
            data += 1
        else:
            gap += 1
    return out, data


def min_alloc(blocks, max_extents):
    """Fewest blocks allocated so that the data of blocks fits in at most
    max_extents extents (holes before the first and after the last run stay
    holes)."""
    hs, data = holes(blocks)
    if data == 0:
        return 0
    hs.sort(reverse=True)
    unfilled = max(max_extents - 1, 0)
    return data + sum(hs[unfilled:])


def random_map(nblocks, nwrites, seed):
    rng = random.Random(seed)
    m = bytearray(nblocks)
    for _ in range(nwrites):
        m[rng.randrange(nblocks)] = 1
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4G", help="device size")
    ap.add_argument("--written", default="1.37G", help="bytes of random writes")
    ap.add_argument("--bs", default="4K", help="write size")
    ap.add_argument("--ratios", default="2,10,50", help="extent reductions to price")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    bs = parse_size(a.bs)
    m = random_map(parse_size(a.size) // bs, parse_size(a.written) // bs, a.seed)
    hs, data = holes(m)
    runs = len(hs) + 1
    gib = bs / (1 << 30)
    print(f"data {data * gib:.2f} GiB ({data / len(m):.1%} of the blocks) in {runs} runs")
    for r in (int(x) for x in a.ratios.split(",")):
        alloc = min_alloc(m, runs // r)
        print(f"1/{r} of the extents ({runs // r}): at least {alloc * gib:.2f} GiB allocated, "
              f"{alloc / data:.1f}x the data")


if __name__ == "__main__":
    main()
