"""Assemble benchmarks/RESULTS.md from the per-topic tables the benchmarks write."""

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["ingest", "knn", "imputation", "synthesis_fit", "synthesis", "design", "dashboards"]


def main() -> None:
    parts = {p.stem: p.read_text().strip() for p in sorted((HERE / "results").glob("*.md"))}
    names = [n for n in ORDER if n in parts] + sorted(set(parts) - set(ORDER))
    body = "\n\n".join(parts[n] for n in names)
    (HERE / "RESULTS.md").write_text(
        "# Benchmark results\n\nEvery number here was produced by `make bench` (or the per-section command) on "
        "the machine named in each section. Speeds are ratios against a reference timed in the same run.\n\n"
        + body + "\n"
    )
    print(f"wrote {HERE / 'RESULTS.md'} from {len(names)} sections")


if __name__ == "__main__":
    main()
