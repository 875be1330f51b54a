"""The benchmarks' one way to time a call: once to warm up (JAX compiles there), then `repeats` timed calls."""
import time


def seconds_of(fn, repeats):
    """(seconds of the first call, [seconds of each of the `repeats` calls after it]). `fn` must block until its
    work is done (block_until_ready, a device sync)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return first, seconds
