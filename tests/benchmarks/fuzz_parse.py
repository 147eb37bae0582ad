"""Coverage-guided fuzzing of the engine-page parser, seeded from the real fixture pages.

Runs atheris (libFuzzer for Python) over the vLLM page reader. Half the
mutations are libFuzzer's own byte-level ones, steered by the coverage of the
collectors package and a dictionary of edge numbers and hostile fragments; the
other half are the structure-aware ones of tests/page_mutations.py (a value
replaced by NaN or 1e400, a cache_config_info label made huge, lines repeated,
dropped or cut, garbage and invalid UTF-8 spliced in). Every input must satisfy
`page_mutations.check_page`: readings or a CollectorError, nothing else, and the
same outcome read whole and in chunks.

A failing input does not stop the run: each distinct failure (exception type
and the line that raised) is saved as a file under --findings and reproduced
with `--reproduce FILE`. The script prints inputs per second, what the inputs
led to, and what it found; it exits 1 if it found anything.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import atheris

TESTS_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS_DIR))

with atheris.instrument_imports(include=["llm_cost_exporter.collectors"]):
    from page_mutations import (
        EDGE_NUMBERS,
        HOSTILE_TEXT,
        check_page,
        mutate,
        seed_pages,
        wanted_lines_only,
    )


class RandomPicker:
    """The structure-aware mutations' choices, from libFuzzer's seed for this mutation."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def below(self, n: int) -> int:
        return self._rng.randrange(n)


class Harness:
    """Runs each input through the property and keeps count of what happened."""

    def __init__(self, runs: int, findings: Path, workdir: Path) -> None:
        self.runs = runs
        self.findings = findings
        self.workdir = workdir
        self.done = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.found: dict[str, Path] = {}
        self.started = time.perf_counter()

    @staticmethod
    def chunk_size(data: bytes) -> int:
        """A chunk size of 1 to 512 bytes, fixed per input so a finding reproduces."""
        return 1 + int.from_bytes(hashlib.blake2b(data, digest_size=2).digest(), "big") % 512

    def one(self, data: bytes) -> None:
        try:
            outcome = check_page(data, self.chunk_size(data))
        except Exception as error:  # every failure is a finding, saved and counted
            self.record(data, error)
        else:
            if outcome[0] == "error":
                self.outcomes[f"error:{outcome[1]}"] += 1
            else:
                self.outcomes["readings" if outcome[1] else "no readings"] += 1
                self.rejected.update(outcome[2])
        self.done += 1
        if self.done >= self.runs:
            self.report()
            sys.stdout.flush()
            shutil.rmtree(self.workdir, ignore_errors=True)
            # libFuzzer never returns from Fuzz(): leave with the verdict.
            os._exit(1 if self.found else 0)

    def record(self, data: bytes, error: Exception) -> None:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{type(error).__name__} at {Path(frame.filename).name}:{frame.lineno}"
        self.outcomes["FAILED"] += 1
        if where in self.found:
            return
        path = self.findings / f"crash-{hashlib.sha1(data).hexdigest()[:16]}"
        path.write_bytes(data)
        self.found[where] = path
        print(f"\nFOUND {where}: {str(error)[:200]!r}\n  input saved as {path}", flush=True)

    def report(self) -> None:
        seconds = time.perf_counter() - self.started
        print(f"\ninputs: {self.done}  seconds: {seconds:.1f}  inputs/s: {self.done / seconds:.0f}")
        print("outcomes:")
        for name, count in sorted(self.outcomes.items(), key=lambda item: -item[1]):
            print(f"  {name:<28}{count:>9}")
        print("series rejected (sum over inputs):")
        for reason, count in sorted(self.rejected.items()):
            print(f"  {reason:<28}{count:>9}")
        if self.found:
            print(f"FOUND {len(self.found)} distinct failure(s):")
            for where, path in self.found.items():
                print(f"  {where}  ->  {path}")
        else:
            print("found nothing: every input gave readings or a CollectorError")


def write_corpus(directory: Path, max_len: int) -> int:
    """Seed the corpus with every fixture page, cut to its vLLM lines and whole."""
    count = 0
    for name, page in seed_pages().items():
        for kind, text in (("vllm-lines", wanted_lines_only(page)), ("whole", page)):
            if text:
                (directory / f"{name}.{kind}").write_bytes(text[:max_len])
                count += 1
    return count


def write_dictionary(path: Path) -> None:
    """libFuzzer's dictionary: the edge numbers and hostile fragments, as escaped strings."""
    entries = []
    for token in (*EDGE_NUMBERS, *HOSTILE_TEXT):
        if token and len(token) <= 64:
            entries.append('"' + "".join(f"\\x{byte:02x}" for byte in token) + '"')
    path.write_text("\n".join(entries) + "\n")


def reproduce(path: Path) -> int:
    data = path.read_bytes()
    print(f"{path}: {len(data)} bytes, chunk size {Harness.chunk_size(data)}")
    outcome = check_page(data, Harness.chunk_size(data))
    print(f"outcome: {outcome[0]} {outcome[1] if outcome[0] == 'error' else len(outcome[1])}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="inputs to run")
    parser.add_argument("--max-len", type=int, default=4096, help="largest input in bytes")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    parser.add_argument(
        "--findings", type=Path, default=Path("fuzz-findings"), help="where failing inputs go"
    )
    parser.add_argument("--reproduce", type=Path, help="run one saved input and exit")
    args = parser.parse_args()
    if args.reproduce:
        return reproduce(args.reproduce)

    args.findings.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="fuzz-parse-"))
    harness = Harness(args.runs, args.findings, workdir)
    corpus = workdir / "corpus"
    corpus.mkdir()
    seeds = write_corpus(corpus, args.max_len)
    dictionary = workdir / "edge.dict"
    write_dictionary(dictionary)
    print(f"seeds: {seeds} inputs from the fixture pages; runs: {args.runs}; corpus: {corpus}")

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return mutate(data, RandomPicker(rng), 1 + rng.randrange(3))[:max_size]
        return atheris.Mutate(data, max_size)

    atheris.Setup(
        [
            sys.argv[0],
            str(corpus),
            f"-max_len={args.max_len}",
            f"-seed={args.seed}",
            f"-dict={dictionary}",
            "-print_final_stats=0",
            "-print_pcs=0",
        ],
        harness.one,
        custom_mutator=custom_mutator,
    )
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
