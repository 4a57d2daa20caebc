"""The dashboard page of `pipeline serve` (GET /): one self-contained HTML file, no external
assets, that reads GET /status every 2 s and redraws the per-stage table.

The page itself holds no data, so it is served without the API's token; when /status asks for
one (401) the page asks the user for it and keeps it in the tab's sessionStorage, never in a
cookie (which a browser would also send with requests other sites make).

Kept apart from api.py because it is markup, not routing. The first table is rendered on the
server (stage names, dashes for the numbers), so the page says which pipeline it shows even
before, or without, JavaScript.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from framework.stats import STAGE_COLUMNS as COLUMNS

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pipeline {name}</title>
<style>
  body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }}
  h1 {{ font-size: 1.2rem; margin: 0 0 .25rem; }}
  #meta, #totals {{ color: #666; margin: .25rem 0 1rem; }}
  table {{ border-collapse: collapse; }}
  th, td {{ padding: .3rem .8rem; border-bottom: 1px solid #ddd; text-align: right; }}
  th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) {{ text-align: left; }}
  th {{ font-weight: 600; }}
  .error {{ color: #b00; }}
</style>
</head>
<body>
<h1>pipeline {name}</h1>
<div id="meta">connecting…</div>
<form id="login" hidden>
<label>API token <input id="token" type="password" autocomplete="current-password"></label>
<button>show</button>
</form>
<table>
<thead><tr>{headers}</tr></thead>
<tbody id="stages">{rows}</tbody>
</table>
<div id="totals"></div>
<script>
"use strict";
const prefix = "{{" + {name_json} + "}}:";
const count = (value, exact) => exact ? String(value) : value + "+";
function cell(text) {{
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}}
function render(stats) {{
  const body = document.getElementById("stages");
  body.replaceChildren(...stats.stages.map((s) => {{
    const tr = document.createElement("tr");
    const input = s.input_stream.startsWith(prefix)
      ? s.input_stream.slice(prefix.length) : s.input_stream;
    [
      s.stage, input, s.length,
      s.lag === null ? "-" : count(s.lag, s.lag_exact),
      s.pending, s.active_consumers + "/" + s.consumers, s.throughput.toFixed(1),
      count(s.dead_letters, stats.dead_letters.exact), count(s.retries, stats.retries.exact),
    ].forEach((value) => tr.appendChild(cell(String(value))));
    return tr;
  }}));
  const when = new Date(stats.now_ms).toLocaleTimeString();
  const meta = document.getElementById("meta");
  meta.className = "";
  meta.textContent = "Redis " + stats.server_version + ", updated " + when;
  document.getElementById("totals").textContent =
    "dead letters: " + stats.dead_letters.total + "   waiting retries: " + stats.retries.total;
}}
const tokenKey = "pipeline-token:" + location.pathname;
function authorization() {{
  const token = sessionStorage.getItem(tokenKey);
  return token ? {{ Authorization: "Bearer " + token }} : {{}};
}}
document.getElementById("login").addEventListener("submit", (event) => {{
  event.preventDefault();
  sessionStorage.setItem(tokenKey, document.getElementById("token").value);
  document.getElementById("login").hidden = true;
  refresh();
}});
async function refresh() {{
  try {{
    const response = await fetch("status", {{ cache: "no-store", headers: authorization() }});
    if (response.status === 401) {{
      document.getElementById("login").hidden = false;
      throw new Error("this server wants its API token");
    }}
    if (!response.ok) throw new Error("GET /status: " + response.status);
    render(await response.json());
  }} catch (error) {{
    const meta = document.getElementById("meta");
    meta.className = "error";
    meta.textContent = String(error.message || error);
  }}
}}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""


def dashboard_html(name: str, stages: Iterable[str]) -> str:
    """The page for pipeline `name`, its first table listing `stages` until /status answers."""
    headers = "".join(f"<th>{escape(column)}</th>" for column in COLUMNS)
    blanks = "<td>-</td>" * (len(COLUMNS) - 1)
    rows = "".join(f"<tr><td>{escape(stage)}</td>{blanks}</tr>" for stage in stages)
    name_json = '"' + escape(name) + '"'  # names are [A-Za-z0-9_-]: no escaping beyond HTML
    return PAGE.format(name=escape(name), name_json=name_json, headers=headers, rows=rows)
