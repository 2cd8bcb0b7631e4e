"""Benchmarks (`make bench`): each module ``bench/bench_*.py`` has ``async def main() -> dict``."""
