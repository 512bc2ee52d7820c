"""The page at `GET /`: every bake with its image in use, age and state, the lineage as a
picture (bases to services, outdated ones marked), what would rebake and why, a button to
bake, each bake's channels with a button to promote the newest image to one, and the live log
of a bake. Plain HTML, inline SVG and a little plain JavaScript."""

from __future__ import annotations

from html import escape
from typing import Any

from .runs import RunState

ROW_HEIGHT, COLUMN_WIDTH, BOX_WIDTH, BOX_HEIGHT = 46, 190, 160, 30
REFRESH_SECONDS = 3  # how often the page asks what changed

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2733; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { text-align: left; padding: .35em .8em; border-bottom: 1px solid #dde3ea; vertical-align: top; }
.keep { color: #1c7c38; } .bake, .bake-missing, .share { color: #b35a00; } .error { color: #b00020; }
code, pre { font: 13px ui-monospace, monospace; }
pre#log { background: #10161d; color: #d7e1ea; padding: 1em; max-height: 28em; overflow: auto; white-space: pre-wrap; }
svg text { font: 12px system-ui, sans-serif; }
"""

SCRIPT = """
const log = document.getElementById('log'), result = document.getElementById('result');
function show(line) { log.textContent += line + '\\n'; log.scrollTop = log.scrollHeight; }
async function bake(name) {
  log.textContent = ''; result.textContent = 'baking ' + name + '...';
  const token = document.getElementById('token');
  const headers = token && token.value ? {'Authorization': 'Bearer ' + token.value} : {};
  const answer = await fetch('/bake/' + encodeURIComponent(name), {method: 'POST', headers});
  if (!answer.headers.get('content-type').includes('ndjson')) {
    const body = await answer.json();
    result.textContent = name + ': ' + (body.error || (body.state + ': ' + body.result.image));
    return;
  }
  const reader = answer.body.getReader(), decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf('\\n')) >= 0) {
      const item = JSON.parse(buffer.slice(0, cut)); buffer = buffer.slice(cut + 1);
      if ('output' in item) show(item.output);
      if ('result' in item) result.textContent = name + ': ' + item.result.state + ': ' +
        (item.result.error || item.result.image);
    }
  }
}
async function watchElsewhere(bake) {
  result.textContent = 'watching the bake of ' + bake + ' started elsewhere...';
  for (;;) {
    const answer = await fetch('/running/' + encodeURIComponent(bake) + '/log');
    if (!answer.ok) { result.textContent = bake + ': no longer running'; refresh(); return; }
    log.textContent = await answer.text(); log.scrollTop = log.scrollHeight;
    await new Promise(done => setTimeout(done, 1000));
  }
}
function watchButton(cell, onclick) {
  let button = cell.querySelector('.watch-button');
  if (!onclick) { if (button) button.remove(); return; }
  if (!button) {
    button = document.createElement('button'); button.type = 'button'; button.className = 'watch-button';
    button.textContent = 'Watch'; cell.append(' ', button);
  }
  button.onclick = onclick;
}
// What changes (images, ages, states, reasons, runs started anywhere) is refreshed in place.
async function refresh() {
  let amis, plan, status;
  try {
    [amis, plan, status] = await Promise.all(['/amis', '/plan', '/status'].map(
      path => fetch(path).then(answer => answer.json())));
  } catch (error) { return; }
  const planned = Object.fromEntries(plan.bakes.map(row => [row.bake, row]));
  const ours = Object.fromEntries(status.running.concat(status.queued).map(run => [run.bake, run]));
  const others = Object.fromEntries(status.elsewhere.map(run => [run.bake, run]));
  for (const row of amis.bakes) {
    const tr = document.querySelector('#bakes tr[data-bake="' + CSS.escape(row.bake) + '"]');
    if (!tr) continue;
    const cells = tr.querySelectorAll('td'), wanted = planned[row.bake] || {};
    const action = wanted.action || 'error', run = ours[row.bake], other = others[row.bake];
    cells[1].querySelector('code').textContent = row.image ? row.image.image_id : 'none yet';
    cells[2].textContent = row.image ? row.image.age : '-';
    cells[3].textContent = run ? run.state : other ? 'running (' + other.holder + ')' : action;
    cells[3].className = action + ' state';
    cells[4].textContent = wanted.error || (wanted.reasons || []).join('; ') || 'up to date';
    watchButton(cells[5], run ? () => watch(run.id) : other ? () => watchElsewhere(row.bake) : null);
  }
  const counts = plan.counts, toBake = counts.bake + counts['bake-missing'];
  document.getElementById('summary').textContent = toBake + ' to bake, ' + counts.keep + ' up to date' +
    (counts.error ? ', ' + counts.error + ' cannot be planned' : '');
}
// Each bake's channels, with a button that promotes its newest image to the channel; drawn
// again only when they changed, so a button is never replaced under the pointer.
let drawnChannels = '';
async function refreshChannels() {
  let shown;
  try { shown = await (await fetch('/channels')).json(); } catch (error) { return; }
  const seen = JSON.stringify(shown);
  if (seen === drawnChannels) return;
  drawnChannels = seen;
  const body = document.querySelector('#channels tbody'), rows = [];
  for (const bake of shown.bakes) {
    for (const channel of bake.channels) {
      const tr = document.createElement('tr');
      tr.dataset.bake = bake.bake; tr.dataset.channel = channel.channel;
      const last = channel.history.length ? channel.history[channel.history.length - 1] : null;
      for (const text of [bake.bake, channel.channel, channel.image || '(nothing)', channel.age || '-',
                          channel.channel === 'latest' ? 'the newest image' :
                          last ? last.action + ' by ' + last.by + (last.note ? ': ' + last.note : '') : 'never moved']) {
        const td = document.createElement('td'); td.textContent = text; tr.append(td);
      }
      const actions = document.createElement('td');
      if (channel.channel !== 'latest') {
        const button = document.createElement('button');
        button.type = 'button'; button.className = 'promote-button'; button.textContent = 'Promote latest';
        button.onclick = () => promote(bake.bake, channel.channel);
        actions.append(button);
      }
      tr.append(actions); rows.push(tr);
    }
  }
  body.replaceChildren(...rows);
}
async function promote(bake, channel) {
  const token = document.getElementById('token');
  const headers = token && token.value ? {'Authorization': 'Bearer ' + token.value} : {};
  const answer = await (await fetch('/promote/' + encodeURIComponent(bake) + '/' + encodeURIComponent(channel),
                                    {method: 'POST', headers})).json();
  result.textContent = answer.error ? bake + '@' + channel + ': ' + answer.error :
    bake + '@' + channel + ': ' + (answer.before || 'nothing') + ' -> ' + answer.image;
  refreshChannels();
}
refreshChannels();
setInterval(refresh, REFRESH_MS);
setInterval(refreshChannels, REFRESH_MS);
async function watch(id) {
  result.textContent = 'watching ' + id + '...';
  for (;;) {
    const state = await (await fetch('/bakes/' + id)).json();
    const text = await (await fetch('/bakes/' + id + '/log')).text();
    log.textContent = text; log.scrollTop = log.scrollHeight;
    if (state.state === 'succeeded' || state.state === 'failed') {
      result.textContent = state.bake + ': ' + state.state + ': ' +
        (state.outcome.error || state.outcome.image);
      return;
    }
    await new Promise(done => setTimeout(done, 1000));
  }
}
"""


def render(rows: list[dict[str, Any]], planned: dict[str, Any], active: dict[str, RunState],
           token_required: bool, elsewhere: dict[str, str] | None = None) -> str:
    """`elsewhere`: bake -> who holds it, for bakes running on this machine that this server
    did not start (a terminal's `doit`, a CI job)."""
    plan_rows = {row["bake"]: row for row in planned["bakes"]}
    table = "".join(_row(row, plan_rows.get(row["bake"], {}), active.get(row["bake"]), (elsewhere or {}).get(row["bake"]))
                    for row in rows)
    token = ('<p><label>Token <input id="token" type="password" autocomplete="off"></label></p>'
             if token_required else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bakehouse</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>bakehouse</h1>
<p id="summary">{_summary(planned)}</p>
{token}
<table id="bakes">
<thead><tr><th>Bake</th><th>Image in use</th><th>Age</th><th>State</th><th>Why</th><th></th></tr></thead>
<tbody>{table}</tbody>
</table>
<h2>Channels</h2>
<table id="channels">
<thead><tr><th>Bake</th><th>Channel</th><th>Image</th><th>Age</th><th>Last move</th><th></th></tr></thead>
<tbody></tbody>
</table>
<h2>Lineage</h2>
{_lineage(rows, plan_rows)}
<h2>Log</h2>
<p id="result"></p>
<pre id="log"></pre>
<script>const REFRESH_MS = {REFRESH_SECONDS * 1000};{SCRIPT}</script>
</body></html>
"""


def _summary(planned: dict[str, Any]) -> str:
    counts = planned["counts"]
    to_bake = counts["bake"] + counts["bake-missing"]
    return escape(f"{to_bake} to bake, {counts['keep']} up to date" +
                  (f", {counts['error']} cannot be planned" if counts["error"] else ""))


def _row(row: dict[str, Any], planned: dict[str, Any], running: RunState | None, holder: str | None) -> str:
    name = escape(row["bake"])
    image = row["image"]
    action = planned.get("action", "error")
    state = f"{running.state}" if running else f"running ({holder})" if holder else action
    why = planned.get("error") or "; ".join(planned.get("reasons") or []) or "up to date"
    watch = (f' <button type="button" class="watch-button" onclick="watch(\'{escape(running.id)}\')">Watch</button>'
             if running else
             f' <button type="button" class="watch-button" onclick="watchElsewhere(\'{name}\')">Watch</button>'
             if holder else "")
    return (f'<tr data-bake="{name}"><td>{name}</td>'
            f'<td><code>{escape(image["image_id"]) if image else "none yet"}</code></td>'
            f'<td>{escape(image["age"]) if image else "-"}</td>'
            f'<td class="{escape(action)} state">{escape(state)}</td><td class="why">{escape(why)}</td>'
            f'<td><button type="button" class="bake-button" onclick="bake(\'{name}\')">Bake</button>{watch}</td></tr>')


def _lineage(rows: list[dict[str, Any]], plan_rows: dict[str, dict[str, Any]]) -> str:
    """Bases in the first column, what builds on them to the right, an arrow from each base;
    a bake that would rebake is drawn in orange with a dashed outline."""
    depth: dict[str, int] = {}
    for row in rows:  # bases come first
        depth[row["bake"]] = 0 if row["base"] is None else depth.get(row["base"], 0) + 1
    per_column: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for row in rows:
        column = depth[row["bake"]]
        where[row["bake"]] = (10 + column * COLUMN_WIDTH, 10 + per_column.get(column, 0) * ROW_HEIGHT)
        per_column[column] = per_column.get(column, 0) + 1
    width = 20 + (max(depth.values(), default=0) + 1) * COLUMN_WIDTH
    height = 20 + max(per_column.values(), default=1) * ROW_HEIGHT
    shapes = []
    for row in rows:
        x, y = where[row["bake"]]
        if row["base"] in where:
            bx, by = where[row["base"]]
            shapes.append(f'<line x1="{bx + BOX_WIDTH}" y1="{by + BOX_HEIGHT // 2}" x2="{x}" y2="{y + BOX_HEIGHT // 2}" '
                          'stroke="#7a8794" marker-end="url(#arrow)"/>')
        outdated = plan_rows.get(row["bake"], {}).get("action", "keep") != "keep"
        colour, dash = ("#b35a00", ' stroke-dasharray="4 3"') if outdated else ("#1c7c38", "")
        shapes.append(
            f'<g class="node{" outdated" if outdated else ""}" data-bake="{escape(row["bake"])}">'
            f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="5" fill="white" stroke="{colour}"'
            f' stroke-width="2"{dash}/><text x="{x + 10}" y="{y + 19}" fill="{colour}">{escape(row["bake"])}'
            f'{" (would rebake)" if outdated else ""}</text></g>')
    return (f'<svg id="lineage" width="{width}" height="{height}" role="img" aria-label="bake lineage">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7a8794"/></marker></defs>'
            + "".join(shapes) + "</svg>")
