"""benchmarks/debian_descriptions.py: one description a line, a summary where there is none."""

import gzip
import json

from bench_helpers import load_benchmark


def test_descriptions_one_a_line_with_the_summary_for_an_empty_one(tmp_path):
    bench = load_benchmark("debian_descriptions")
    rows = [
        {
            "package": "a",
            "source": "a",
            "section": "x",
            "summary": "A tool",
            "description": "First line.\n  Second   line.",
        },
        {"package": "b", "source": "b", "section": "x", "summary": "  B  tool ", "description": ""},
    ]
    data = tmp_path / "p.jsonl.gz"
    with gzip.open(data, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "d.txt"
    assert bench.main(["--data", str(data), "--out", str(out)]) == 0
    assert out.read_text() == "First line. Second line.\nB tool\n"
