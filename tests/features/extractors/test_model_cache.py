"""Model caches: one load per process and arguments, also under threads; ``clear_model_caches`` forgets."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from features.extractors.base import clear_model_caches, model_cache
from features.extractors.packaged import default_model_path
from features.extractors.text import load_text_model


def test_two_threads_asking_at_once_load_once() -> None:
    calls: list[str] = []

    @model_cache
    def slow_load(name: str) -> object:
        calls.append(name)
        time.sleep(0.2)  # both threads are inside the cache before the first load ends
        return object()

    start = threading.Barrier(4)

    def ask(name: str) -> object:
        start.wait()
        return slow_load(name)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(ask, ["a", "a", "a", "b"]))
    assert got[0] is got[1] is got[2] and got[3] is not got[0]
    assert sorted(calls) == ["a", "b"]
    clear_model_caches()
    assert slow_load("a") is not got[0] and sorted(calls) == ["a", "a", "b"]


def test_text_model_is_shared_across_spellings_of_its_key_until_cleared() -> None:
    folder = default_model_path()
    first = load_text_model(folder, "cpu")
    assert load_text_model(str(folder), "cpu") is first  # str or Path, "cpu" or torch.device: one key
    clear_model_caches()
    again = load_text_model(folder, "cpu")
    assert again is not first and again[1].config.hidden_size == first[1].config.hidden_size
