"""Speed, memory and request counts of ``cohere-events run --provider openai`` on the simulated OpenAI API.

    uv run python bench/openai.py                        # 5,000 jobs
    uv run python bench/openai.py --jobs 200             # quick
    uv run python bench/openai.py --rate-limit 500       # the server and ours at 500 requests a minute
    uv run python bench/openai.py --update-readme        # rewrite the OpenAI table in bench/README.md

As bench/together.py measures Together AI's: into one fresh DuckDB file, a first run (every job's events and
checkpoints), a run with nothing new (the list, plus the jobs under way), then a run after the simulated clock
moved on one hour. OpenAI documents no rate limit for its fine-tuning endpoints, so the default is none (0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import update_readme
from bench.together import bench, table, warm_up

README_START = "<!-- openai:start -->"
README_END = "<!-- openai:end -->"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", default="5000", help="job counts, comma-separated")
    parser.add_argument("--rate-limit", type=int, default=0, help="requests a minute, the server's and ours; 0: none")
    parser.add_argument("--update-readme", action="store_true", help="write the table into bench/README.md")
    args = parser.parse_args()
    warm_up("openai")
    rows = [
        row for jobs in args.jobs.split(",") for row in bench(int(jobs), provider="openai", rate_limit=args.rate_limit)
    ]
    text = table(rows)
    print(text)
    if args.update_readme:
        update_readme(text, README_START, README_END)


if __name__ == "__main__":
    main()
