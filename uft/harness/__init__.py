"""The harness: programs that run the library rather than parts of it (the comparison runner, a benchmark sweep, the
pretraining of the world CLIP). Nothing in ``uft`` outside this package imports it."""
