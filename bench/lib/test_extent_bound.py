"""Tests of extent_bound.py.

    python3 -m unittest discover -s bench/lib -p 'test_*.py'
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import extent_bound as E  # noqa: E402


class ExtentBoundTest(unittest.TestCase):
    def test_holes(self):
        # Leading and trailing holes are not between runs.
        hs, data = E.holes([0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
        self.assertEqual(hs, [1, 3])
        self.assertEqual(data, 4)
        self.assertEqual(E.holes([0, 0]), ([], 0))

    def test_min_alloc_fills_smallest_holes(self):
        m = [1, 0, 1, 0, 0, 1, 0, 0, 0, 1]  # 4 runs, holes 1, 2, 3
        self.assertEqual(E.min_alloc(m, 4), 4)   # nothing to fill
        self.assertEqual(E.min_alloc(m, 3), 5)   # fill the 1-block hole
        self.assertEqual(E.min_alloc(m, 2), 7)   # and the 2-block one
        self.assertEqual(E.min_alloc(m, 1), 10)  # everything from first to last
        self.assertEqual(E.min_alloc(m, 0), 10)
        self.assertEqual(E.min_alloc([0, 0, 0], 1), 0)

    def test_random_map_bound_grows_as_extents_shrink(self):
        m = E.random_map(1 << 14, 1 << 12, seed=3)
        hs, data = E.holes(m)
        runs = len(hs) + 1
        prev = data
        for r in (1, 2, 10, 50):
            a = E.min_alloc(m, runs // r)
            self.assertGreaterEqual(a, prev)
            prev = a
        self.assertEqual(E.min_alloc(m, runs), data)
        # 22% of the blocks written at random: 1/50 of the extents needs
        # most of the span between the first and last write.
        self.assertGreater(E.min_alloc(m, runs // 50), 3 * data)

    def test_parse_size(self):
        self.assertEqual(E.parse_size("4G"), 4 << 30)
        self.assertEqual(E.parse_size("1.5k"), 1536)
        self.assertEqual(E.parse_size("512"), 512)


if __name__ == "__main__":
    unittest.main()
