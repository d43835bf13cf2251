"""``cohere-events report --format html``: one self-contained page, readable offline and from ``file://``.

Charts are matplotlib's SVG, inlined (text kept as text, so the page's own fonts draw it); no script, font, image or
style comes from anywhere else. Every chart has a title and a description for screen readers and the table it was
drawn from beside it, so nothing depends on seeing a picture. The figures are the ones ``report --format json``
gives, plus the distribution of closed intervals per status and the lifecycle timings.
"""

from __future__ import annotations

import html
import io
import math
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from pipelines import config, locks, providers
from pipelines.providers import Provider
from pipelines.report import duration, metric, moment, percent, provider_section, read_report
from pipelines.words import plural

EXTRA_QUERIES = {
    "failure_rates_weekly_all": "select * from {schema}.failure_rates_weekly order by cohort_week",
    "closed_durations": """
        select status, duration_seconds from {schema}.status_intervals
        where not is_open and duration_seconds > 0
    """,
    "lifecycle": """
        select step, count(value) as items, quantile_cont(value, 0.5) as p50_seconds,
            quantile_cont(value, 0.9) as p90_seconds, max(value) as max_seconds
        from (
            unpivot (select {timings} from {schema}.{lifecycle})
            on {timings}
            into name step value value
        )
        group by step
    """,
}
INK, BAND, ACCENT = "#1f3b57", "#9fc3e6", "#c0392b"
# Charts are drawn 4.8 inches wide at 11 pt and shown from a phone's 23 rem to 32 rem, so that their text is drawn
# between about 10 and 17 CSS px: legible on a phone, about the page's own text on a desktop.
CHART_WIDTH = 4.8
MAX_WEEK_TICKS = 8
# cells that never wrap: numbers, percentages and intervals, durations, timestamps
FIGURE = re.compile(r"[\d.,%:\- ]+(to [\d.,%]+)?|\d+[dhms]( \d+[dhms])?|-")
CARD_WIDTH_CH = 44  # a table whose widest row needs more characters than this becomes cards on a phone


def write_html_report(output: Path | None) -> str:
    """Render the page; write it to ``output`` (beside it first, then renamed) or stdout. Returns the last line."""
    path = config.existing_warehouse("report")
    report = read_report(path)
    for name in report["providers"]:
        provider_section(report, name).update(read_extra(path, providers.get(name)))
    page = render(report)
    if output is None:
        print(page, flush=True)
        return ""
    write_atomically(output, page)
    return f"wrote {output} ({len(page.encode()) / 1024:.0f} KB): {summary_words(report)}"


def read_extra(path: Path, provider: Provider) -> dict[str, Any]:
    """What the page shows beyond ``report``: every week's rate, closed durations, lifecycle timing quantiles."""
    lifecycle = provider.module("lifecycle")
    names = {
        "schema": provider.dataset,
        "lifecycle": lifecycle.VIEW_WORDS["lifecycle"],
        "timings": ", ".join(lifecycle.TIMING_LABELS),
    }
    with locks.reading(config.pipelines_dir("duckdb")), duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        found = {}
        for key, sql in EXTRA_QUERIES.items():
            result = con.execute(sql.format(**names))
            columns = [column[0] for column in result.description or []]
            found[key] = [dict(zip(columns, row, strict=True)) for row in result.fetchall()]
    order = list(lifecycle.TIMING_LABELS)
    found["lifecycle"].sort(key=lambda row: order.index(row["step"]))
    return found


def write_atomically(output: Path, text: str) -> None:
    """Write beside ``output``, then rename over it: a failed write leaves no half-written page."""
    folder = output.resolve().parent
    handle, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def summary_words(report: dict[str, Any]) -> str:
    """Per provider: its failure rate and stale items."""
    parts = []
    for name in report["providers"]:
        provider, section = providers.get(name), provider_section(report, name)
        rate, items = section["failure_rate"], provider.items
        overall = f"no resolved {items}" if not rate or rate["failure_rate"] is None else percent(rate["failure_rate"])
        stale = len(section[provider.module("lifecycle").VIEW_NAMES["stale"]])
        text = f"failure rate {overall}, {plural(stale, 'stale ' + provider.item, 'stale ' + items)}"
        parts.append(text if name == providers.DEFAULT else f"{name}: {text}")
    return "; ".join(parts)


# --- the page -----------------------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    """The page: with several providers, their headline side by side, then each one's sections under its name."""
    lines = report["providers"].values()
    if len(lines) > 1:
        as_of = "; ".join(f"{line['title']} {moment(line['data_as_of'])}" for line in lines)
    else:
        as_of = moment(report["data_as_of"])
    several = len(report["providers"]) > 1
    blocks = [providers_section(report)] if several else []
    for name in report["providers"]:
        provider = providers.get(name)
        if several:
            blocks.append(f'<h2 class="provider" id="provider-{esc(name)}">{esc(provider.title)}</h2>')
        blocks.append(provider_sections(provider_section(report, name), provider))
    return PAGE.format(
        title="Fine-tuning lifecycle report",
        as_of=esc(as_of),
        warehouse=esc(report["warehouse"]),
        body="\n".join(blocks),
    )


@dataclass(frozen=True)
class Words:
    """How one provider's sections name things: its items, success, ids; ids and anchors prefixed but for the
    default provider's, so that its page reads as it did before there was a second provider."""

    provider: Provider

    @property
    def lifecycle(self) -> Any:
        return self.provider.module("lifecycle")

    @property
    def items(self) -> str:
        return self.provider.items

    @property
    def succeeded(self) -> str:
        return str(self.lifecycle.SUCCEEDED)

    @property
    def prefix(self) -> str:
        return "" if self.provider.name == providers.DEFAULT else f"{self.provider.name}-"


def provider_sections(data: dict[str, Any], provider: Provider) -> str:
    words = Words(provider)
    return "\n".join(
        [
            failure_section(data, words),
            status_section(data, words),
            stale_section(data, words),
            lifecycle_section(data, words),
            training_section(data, words),
        ]
    )


def providers_section(report: dict[str, Any]) -> str:
    rows = [
        [
            line["title"],
            plural(line["items"], line["item"]),
            percent(line["failure_rate"]),
            f"{percent(line['wilson_low'])} to {percent(line['wilson_high'])}",
            duration(line["queue_p50_seconds"]),
            duration(line["queue_p90_seconds"]),
            duration(line["training_p50_seconds"]),
            duration(line["training_p90_seconds"]),
            "no load yet" if line["data_as_of"] is None else line["data_as_of"][:19].replace("T", " "),
        ]
        for line in report["providers"].values()
    ]
    headers = ["provider", "fine-tunes", "failure rate", "95 % interval", "queue p50", "queue p90", "training p50"]
    table = html_table("First attempts and timings, per provider", [*headers, "training p90", "data as of (UTC)"], rows)
    return section("Providers side by side", table)


def failure_section(data: dict[str, Any], words: Words) -> str:
    rate = data["failure_rate"] or {}
    weekly = data["failure_rates_weekly_all"]
    items, succeeded = words.items, words.succeeded
    headline = (
        f'<p class="headline"><span id="{words.prefix}overall-failure-rate">{esc(percent(rate.get("failure_rate")))}'
        f"</span> of {rate.get('resolved', 0)} resolved {items} failed (95 % interval "
        f"{esc(percent(rate.get('wilson_low')))} &ndash; {esc(percent(rate.get('wilson_high')))}); "
        f"{rate.get(items, 0)} {items}, {rate.get('cancelled', 0)} "
        f"cancelled, {rate.get('in_flight', 0)} in flight.</p>"
    )
    rows = [
        [
            str(row["cohort_week"]),
            row[items],
            row[succeeded],
            row["failed"],
            row["resolved"],
            percent(row["failure_rate"]),
            f"{percent(row['wilson_low'])} to {percent(row['wilson_high'])}",
        ]
        for row in weekly
    ]
    table = html_table(
        f"Failure rate by cohort week (UTC Monday of the {words.provider.item}'s first event)",
        ["week", items, succeeded, "failed", "resolved", "failure rate", "95 % interval"],
        rows,
    )
    chart = figure(
        weekly_chart(weekly, items),
        "Failure rate by cohort week, with its Wilson 95 % band",
        f"Weekly failure rate (failed over resolved {items}) as a line, the Wilson 95 % interval as a shaded band.",
    )
    return section("Failure rate", headline + chart + table, words.prefix)


def status_section(data: dict[str, Any], words: Words) -> str:
    items = words.items
    rows = [
        [
            row["status"],
            row["closed_intervals"],
            row["open_intervals"],
            row[items],
            duration(row["p50_seconds"]),
            duration(row["p90_seconds"]),
            duration(row["max_seconds"]),
        ]
        for row in data["time_in_status"]
    ]
    table = html_table(
        "Time in status, closed intervals",
        ["status", "closed", "open", items, "p50", "p90", "max"],
        rows,
    )
    chart = figure(
        status_chart(data["closed_durations"], words.lifecycle.STATUS_ORDER),
        f"How long {items} stay in each status",
        "Box plots of closed interval durations per status, in hours on a logarithmic scale.",
    )
    return section("Time in status", chart + table, words.prefix)


def stale_section(data: dict[str, Any], words: Words) -> str:
    items, item = words.items, words.provider.item
    stale = data[words.lifecycle.VIEW_NAMES["stale"]]
    id_column = words.lifecycle.VIEW_WORDS["id"]
    under_way = ", ".join(status.lower() for status in words.lifecycle.UNDER_WAY)
    rows = [
        [
            row[id_column],
            row["name"] or "",
            row["current_status"],
            str(row["current_since"])[:19],
            duration(row["stuck_seconds"]),
        ]
        for row in stale
    ]
    title = f"Stale {items}"
    if not rows:
        return section(title, f"<p>No {item} has been {under_way} for over 48 hours.</p>", words.prefix)
    table = html_table(
        f"{plural(len(rows), item, items)} {under_way} for over 48 hours",
        [f"{item} id", "name", "status", "since (UTC)", "stuck for"],
        rows,
        css="stale",
    )
    return section(title, table, words.prefix)


def lifecycle_section(data: dict[str, Any], words: Words) -> str:
    steps = data["lifecycle"]
    labels = words.lifecycle.TIMING_LABELS
    rows = [
        [
            labels[row["step"]],
            row["items"],
            duration(row["p50_seconds"]),
            duration(row["p90_seconds"]),
            duration(row["max_seconds"]),
        ]
        for row in steps
    ]
    table = html_table("Lifecycle timings", ["step", words.items, "p50", "p90", "max"], rows)
    chart = figure(
        lifecycle_chart(steps, labels),
        "Lifecycle timings: median and 90th percentile",
        "Horizontal bars of the median and 90th percentile hours each lifecycle step takes.",
    )
    return section("Lifecycle timings", chart + table, words.prefix)


def training_section(data: dict[str, Any], words: Words) -> str:
    training = data.get("training")
    if not training:
        return section(
            "Training", "<p>This warehouse's views predate training metrics: run a load first.</p>", words.prefix
        )
    titles = words.lifecycle.TRAINING_TITLES
    tables = [
        html_table(
            titles[key],
            [name.replace("_", " ") for name in rows[0]],
            [[metric(value) if isinstance(value, float) else value for value in row.values()] for row in rows],
        )
        if rows
        else f"<p>{esc(titles[key])}: none.</p>"
        for key, rows in training.items()
    ]
    return section("Training", "".join(tables), words.prefix)


# --- charts (matplotlib, as inline SVG) ---------------------------------------------------------------------------


def weekly_chart(weekly: list[dict[str, Any]], items: str) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(CHART_WIDTH, 3))
    judged = [row for row in weekly if row["failure_rate"] is not None]
    if judged:
        weeks = [as_date(row["cohort_week"]) for row in judged]
        ax.fill_between(
            weeks,
            [row["wilson_low"] for row in judged],
            [row["wilson_high"] for row in judged],
            color=BAND,
            alpha=0.6,
            linewidth=0,
            label="Wilson 95 %",
        )
        ax.plot(weeks, [row["failure_rate"] for row in judged], color=INK, marker="o", label="failure rate")
        ticks = weeks[:: max(1, math.ceil(len(weeks) / MAX_WEEK_TICKS))]
        ax.set_xticks(ticks, [week.strftime("%d %b %Y") for week in ticks])
        legend_above(ax)
    else:
        ax.text(0.5, 0.5, f"no resolved {items} yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:.0%}"))
    ax.set_ylabel("failed / resolved")
    fig.autofmt_xdate()
    return svg(fig)


def status_chart(durations: list[dict[str, Any]], order: list[str]) -> str:
    plt = pyplot()
    by_status: dict[str, list[float]] = {}
    for row in durations:
        by_status.setdefault(row["status"], []).append(row["duration_seconds"] / 3600)
    statuses = sorted(by_status, key=lambda s: order.index(s) if s in order else len(order))
    fig, ax = plt.subplots(figsize=(CHART_WIDTH, 0.9 + 0.32 * max(len(statuses), 1)))
    if statuses:
        ax.boxplot(
            [by_status[s] for s in statuses], orientation="horizontal", showfliers=True, flierprops={"markersize": 3}
        )
        ax.set_yticks(range(1, len(statuses) + 1), statuses)
        ax.invert_yaxis()  # the lifecycle's order, top down
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:g}"))  # no smaller superscripts
        ax.set_xlabel("hours (log scale)")
    else:
        ax.text(0.5, 0.5, "no closed intervals yet", ha="center", va="center", transform=ax.transAxes)
    return svg(fig)


def lifecycle_chart(steps: list[dict[str, Any]], labels: dict[str, str]) -> str:
    plt = pyplot()
    shown = [row for row in steps if row["p50_seconds"] is not None]
    fig, ax = plt.subplots(figsize=(CHART_WIDTH, 0.9 + 0.45 * max(len(shown), 1)))
    names = [labels[row["step"]].split(" (")[0] for row in shown]  # the table beside it has the full label
    positions = range(len(shown))
    ax.barh([p - 0.2 for p in positions], [row["p50_seconds"] / 3600 for row in shown], 0.4, color=INK, label="p50")
    ax.barh([p + 0.2 for p in positions], [row["p90_seconds"] / 3600 for row in shown], 0.4, color=BAND, label="p90")
    ax.set_yticks(list(positions), names)
    ax.invert_yaxis()  # the lifecycle's order top down, and in each step p50 above p90, as the legend lists them
    ax.set_xlabel("hours")
    if shown:
        legend_above(ax)
    return svg(fig)


def legend_above(ax: Any) -> None:
    """The legend in a row above the plot, where it cannot cover a line, a band or a bar."""
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), ncol=2, frameon=False, borderaxespad=0)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported only for the HTML report (a second of import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",
            "font.size": 11,
            "font.sans-serif": ["DejaVu Sans"],
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "cohere-events",
        }
    )
    return plt


def svg(fig: Any) -> str:
    """The figure as an SVG element to inline: no XML prologue, sized by the page."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    pyplot().close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    # a tenth of a point is finer than any screen draws; the words between tags stay as they are
    text = re.sub(r">[^<]*<|(\d+\.\d)\d+", lambda found: found.group(1) or found.group(0), text)
    text = re.sub(r">\s+<", "><", text)
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)


def figure(chart: str, title: str, description: str) -> str:
    labelled = chart.replace("<svg", f'<svg role="img" aria-label="{esc(title)}. {esc(description)}"', 1)
    return f"<figure>{labelled}<figcaption>{esc(title)}</figcaption></figure>"


# --- HTML helpers -------------------------------------------------------------------------------------------------


def html_table(caption: str, headers: list[str], rows: list[list[Any]], css: str = "") -> str:
    """A table that wraps its text; on a phone, one that would not fit is shown as one card per row instead."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = "".join(
        "<tr>" + "".join(table_cell(header, cell) for header, cell in zip(headers, row, strict=True)) + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}">none yet</td></tr>'
    widths = [
        max([len(h) for h in header.split()] + [len(esc(row[i])) for row in rows]) for i, header in enumerate(headers)
    ]
    classes = [css] if css else []
    if sum(widths) + 2 * len(headers) > CARD_WIDTH_CH:
        classes.append("cards")
    klass = f' class="{" ".join(classes)}"' if classes else ""
    return (
        f'<div class="scroll"><table{klass}><caption>{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def table_cell(header: str, value: Any) -> str:
    figure_like = isinstance(value, int | float) or bool(FIGURE.fullmatch(esc(value)))
    klass = ' class="n"' if figure_like else ""
    return f'<td data-label="{esc(header)}"{klass}>{esc(value)}</td>'


def section(title: str, content: str, prefix: str = "") -> str:
    anchor = prefix + title.lower().replace(" ", "-")
    return f'<section aria-labelledby="{anchor}"><h2 id="{anchor}">{esc(title)}</h2>{content}</section>'


def esc(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return html.escape(str(value))


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cohere-events">
<title>{title}</title>
<style>
:root {{ color-scheme: light; --ink: #1b2733; --muted: #5b6b7a; --rule: #d8dee4; }}
body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1rem; max-width: 72rem; }}
header p {{ color: var(--muted); margin: 0.2rem 0; }}
h1 {{ font-size: 1.6rem; margin-bottom: 0.2rem; }}
h2 {{ font-size: 1.25rem; border-bottom: 1px solid var(--rule); padding-bottom: 0.2rem; margin-top: 2rem; }}
h2.provider {{ font-size: 1.5rem; background: #eef3f8; border: none; padding: 0.4rem 0.6rem; margin-top: 2.5rem; }}
.headline {{ font-size: 1.1rem; }}
.headline span {{ font-size: 2rem; font-weight: 700; }}
figure {{ margin: 1rem 0; }}
figure svg {{ width: 100%; height: auto; max-width: 32rem; display: block; }}
code {{ overflow-wrap: anywhere; }}
figcaption {{ color: var(--muted); font-size: 0.9rem; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }}
caption {{ text-align: left; font-weight: 600; padding: 0.3rem 0; }}
th, td {{ padding: 0.25rem 0.6rem; border-bottom: 1px solid var(--rule); text-align: left; vertical-align: top; }}
td {{ font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }}
td.n {{ white-space: nowrap; }}
table.stale td:first-child {{ font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85rem; }}
@media (max-width: 40rem) {{
  body {{ font-size: 15px; padding: 0.6rem; }} .headline span {{ font-size: 1.6rem; }}
  figure svg {{ max-width: 100%; }}
  table.cards, table.cards caption, table.cards tbody, table.cards tr {{ display: block; }}
  table.cards thead {{ display: none; }}
  table.cards tr {{ border-bottom: 1px solid var(--rule); padding: 0.3rem 0; }}
  table.cards td {{ display: grid; grid-template-columns: minmax(6rem, 40%) 1fr; gap: 0.6rem; border: none;
                   padding: 0.05rem 0; white-space: normal; }}
  table.cards td::before {{ content: attr(data-label); color: var(--muted); }}
}}
@media print {{ body {{ max-width: none; }} section {{ break-inside: avoid-page; }} .scroll {{ overflow: visible; }} }}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p>Data as of <strong id="data-as-of">{as_of}</strong> (the last completed load)</p>
<p>Warehouse: <code>{warehouse}</code></p>
</header>
<main>
{body}
</main>
<footer><p>Made by cohere-events from the warehouse's views. All times UTC.</p></footer>
</body>
</html>
"""
