// The operations page: fetches state.json and shows it. Every value from the field
// (gateway ids, site names, alert messages) goes into text nodes, never into markup.
"use strict";

const DEFAULT_REFRESH_S = 10;

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined || value === "" ? "-" : String(value);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function ago(seconds) {
  if (seconds < 120) return Math.round(seconds) + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function when(ns) {
  return new Date(ns / 1e6).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function fleetRow(g) {
  const tr = document.createElement("tr");
  tr.dataset.gateway = g.gateway;
  for (const p of g.problems) tr.classList.add("problem-" + p);
  cell(tr, g.gateway, "gateway");
  cell(tr, g.district);
  cell(tr, g.site);
  cell(tr, g.problems.join(" "), "problems");
  cell(tr, ago(g.age_s), "seen").title = when(g.last_seen_ns);
  cell(tr, g.status, "status");
  cell(tr, g.link_up === null ? null : (g.link_up ? "up" : "down"));
  cell(tr, g.outbox_readings, "num");
  cell(tr, g.outbox_full_pct, "num");
  cell(tr, g.oldest_age_s === null ? null : Math.round(g.oldest_age_s), "num");
  cell(tr, g.dropped_readings, "num");
  cell(tr, g.clock_offset_ms === null ? null : Math.round(g.clock_offset_ms), "num");
  cell(tr, g.agent_version, "version");
  cell(tr, g.firing.join(", "));
  return tr;
}

function alertRow(a) {
  const tr = document.createElement("tr");
  tr.dataset.alertId = a.alert_id;
  tr.classList.add("severity-" + String(a.severity).replace(/[^a-z0-9_-]/gi, "_"));
  cell(tr, when(a.time_ns));
  cell(tr, a.rule, "rule");
  cell(tr, a.severity);
  cell(tr, [a.district, a.site, a.gateway].filter((x) => x).join(" / "));
  cell(tr, typeof a.value === "number" ? a.value.toFixed(1) : null, "num");
  cell(tr, a.message, "message");
  cell(tr, a.alert_id, "id");
  return tr;
}

function show(state) {
  const error = document.getElementById("error");
  error.hidden = !state.error;
  error.textContent = state.error || "";
  document.querySelector("#fleet tbody").replaceChildren(...state.gateways.map(fleetRow));
  document.querySelector("#alerts tbody").replaceChildren(...state.alerts.map(alertRow));
  document.getElementById("no-alerts").hidden = state.alerts_total > 0;
  document.getElementById("fleet-count").textContent = "(" + state.gateways_total + ")";
  document.getElementById("alerts-count").textContent = "(" + state.alerts_total + ")";
  document.getElementById("summary").textContent =
    state.gateways_total + " gateways, " + state.stale_total + " stale (silent over " +
    state.stale_s + " s), " + state.alerts_total + " open alerts";
  document.getElementById("updated").textContent = "data of " + when(state.generated_ns);
  document.body.dataset.loaded = "yes";
}

async function refresh() {
  let next = DEFAULT_REFRESH_S;
  try {
    const answer = await fetch("state.json", {cache: "no-store"});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const state = await answer.json();
    show(state);
    next = state.refresh_s || DEFAULT_REFRESH_S;
  } catch (e) {
    const error = document.getElementById("error");
    error.hidden = false;
    error.textContent = "no answer from the collector: " + e.message;
  }
  setTimeout(refresh, next * 1000);
}

refresh();
