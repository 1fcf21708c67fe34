// The regulator console: alert queue (live over Server-Sent Events), search, lineage graph, recall list,
// supply charts. Written here, no library, served by the service itself.
//
// Codes, names and messages come from outside: they only ever reach the page as text nodes
// (textContent, createTextNode, setAttribute of plain attributes); this file never assigns innerHTML.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  const $ = (id) => document.getElementById(id);

  // -- building DOM without markup strings ------------------------------------------------------
  function fill(node, attrs, children) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", value);
      else if (typeof value === "function") node.addEventListener(name.replace(/^on/, ""), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const h = (tag, attrs, ...children) => fill(document.createElement(tag), attrs, children);
  const s = (tag, attrs, ...children) => fill(document.createElementNS(SVG, tag), attrs, children);
  const clear = (node) => { while (node.firstChild) node.removeChild(node.firstChild); return node; };

  // -- calling the console's routes ---------------------------------------------------------------
  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.method && options.method !== "GET") {
      headers["X-CSRF-Token"] = csrf;
      headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, { ...options, headers, credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign("/console"); // signed out, or the key was revoked
      throw new Error("signed out");
    }
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const error = new Error((body && body.error && body.error.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }
  const q = (params) => {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") search.set(k, v);
    const text = search.toString();
    return text ? `?${text}` : "";
  };
  const seg = (code) => encodeURIComponent(code);

  const KINDS = {
    live_pigs: "生猪 live pigs", slaughter_batch: "屠宰批次 slaughter batch", carcass: "胴体/分割 carcass",
    received: "进货批次 received", sale: "销售 sale", produce: "农产品 produce", unresolved: "未到达 unresolved",
  };
  const STATUSES = {
    active: "在售 active", stopped: "已暂停 STOPPED", exhausted: "已售完 exhausted", disposed: "已处置 disposed",
    unresolved: "待补报 unresolved", open: "待处理 open", acknowledged: "已确认 acknowledged", resolved: "已解决 resolved",
  };
  const kindLabel = (k) => KINDS[k] || k || "";
  const statusLabel = (k) => STATUSES[k] || k || "";
  const kg = (v) => (v === null || v === undefined ? "" : Number(v).toLocaleString("zh-CN", { maximumFractionDigits: 3 }));
  const time = (v) => {
    if (!v) return "";
    const d = new Date(v);
    if (Number.isNaN(d.getTime())) return String(v);
    return d.toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
  };
  const holder = (name, code) => (name ? `${name} (${code || ""})` : code || "");
  const cut = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

  // -- the alert queue ----------------------------------------------------------------------------
  const alerts = new Map();
  let alertCursor = null;

  function setStream(state, label) {
    const el = $("stream-status");
    el.dataset.state = state;
    el.textContent = label;
  }

  function subjectCell(alert) {
    const subject = alert.subject || {};
    const cell = h("td", {}, h("span", { class: "en" }, subject.type || ""), " ");
    if ((subject.type === "lot" || subject.type === "sale") && subject.code) {
      cell.append(h("button", {
        type: "button", class: "linkish code", "data-trace": subject.code,
        onclick: () => traceLot(subject.code),
      }, subject.code));
    } else {
      cell.append(h("span", { class: "code" }, subject.code || ""));
    }
    return cell;
  }

  function alertRow(alert, fresh) {
    const note = h("input", { type: "text", maxlength: 2000, placeholder: "备注 note", "aria-label": `备注 note ${alert.id}` });
    const act = (action) => async () => {
      for (const b of row.querySelectorAll("button")) b.disabled = true;
      try {
        const body = note.value.trim() ? { note: note.value.trim() } : {};
        upsertAlert(await api(`/console/api/alerts/${seg(alert.id)}/${action}`, { method: "POST", body: JSON.stringify(body) }), false);
      } catch (error) {
        setStatus("search-status", `操作失败 Failed: ${error.message}`, true);
        renderAlerts();
      }
    };
    const ack = h("button", { type: "button", class: "ack", onclick: act("acknowledge"), disabled: alert.status !== "open" }, "确认 Acknowledge");
    const resolve = h("button", { type: "button", class: "resolve secondary", onclick: act("resolve"), disabled: alert.status === "resolved" }, "解决 Resolve");
    const message = alert.message || {};
    const row = h("tr", { "data-alert-id": alert.id, "data-status": alert.status, class: fresh ? "fresh" : null },
      h("td", {}, time(alert.updated_at || alert.created_at)),
      h("td", {}, h("span", { class: `sev sev-${alert.severity}` }, alert.severity, alert.level ? ` ${alert.level}` : "")),
      h("td", {}, h("code", {}, alert.rule)),
      subjectCell(alert),
      h("td", {}, h("div", {}, message.zh || ""), h("div", { class: "msg-en" }, message.en || "")),
      h("td", { class: "alert-status" }, statusLabel(alert.status)),
      h("td", {}, h("div", { class: "actions" }, note, ack, resolve)),
    );
    return row;
  }

  function renderAlerts(freshId) {
    const rows = clear($("alert-rows"));
    const sorted = [...alerts.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    for (const alert of sorted) rows.append(alertRow(alert, alert.id === freshId));
    $("alerts-empty").hidden = sorted.length > 0;
  }

  function upsertAlert(alert, fromStream) {
    const known = alerts.get(alert.id);
    if (known && known.version > alert.version) return;
    const filter = $("alert-filter").value;
    // A new alert that the filter hides stays hidden; one already shown is updated in place.
    if (!known && filter && alert.status !== filter) return;
    alerts.set(alert.id, alert);
    renderAlerts(fromStream && !known ? alert.id : null);
  }

  async function loadAlerts(more) {
    if (!more) { alerts.clear(); alertCursor = null; }
    try {
      const page = await api(`/console/api/alerts${q({ status: $("alert-filter").value, cursor: alertCursor })}`);
      for (const alert of page.items) {
        const known = alerts.get(alert.id);
        if (!known || known.version <= alert.version) alerts.set(alert.id, alert);
      }
      alertCursor = page.next_cursor;
      $("alerts-more").hidden = !alertCursor;
      renderAlerts();
    } catch (error) {
      setStatus("search-status", `预警加载失败 Could not load alerts: ${error.message}`, true);
    }
  }

  function connectStream() {
    const source = new EventSource("/console/api/alerts/stream");
    window.addEventListener("pagehide", () => source.close());
    source.addEventListener("open", () => setStream("live", "实时 Live"));
    source.addEventListener("alert", (event) => {
      try { upsertAlert(JSON.parse(event.data), true); } catch (_) { /* a malformed message is skipped */ }
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) setStream("closed", "已断开，请刷新 Disconnected: reload the page");
      else setStream("reconnecting", "重新连接中 Reconnecting…");
    });
  }

  // -- status lines -------------------------------------------------------------------------------
  function setStatus(id, text, isError) {
    const el = $(id);
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  }

  // -- search -------------------------------------------------------------------------------------
  async function search(code) {
    const out = clear($("search-result"));
    setStatus("search-status", "查询中 Searching…");
    let found;
    try {
      found = await api(`/console/api/search${q({ code })}`);
    } catch (error) {
      setStatus("search-status", error.status === 404 ? `未找到 Nothing known by ${code}` : `查询失败 Failed: ${error.message}`, error.status !== 404);
      return;
    }
    setStatus("search-status", "");
    if (found.alert) {
      const a = found.alert;
      out.append(h("div", { class: "result-card" }, h("strong", {}, "预警 Alert "), h("code", {}, a.id), " · ",
        h("code", {}, a.rule), " · ", statusLabel(a.status), h("div", {}, (a.message || {}).zh || ""),
        h("div", { class: "msg-en" }, (a.message || {}).en || "")));
      upsertAlert(a, false);
    }
    if (found.operator) {
      const o = found.operator;
      const card = h("div", { class: "result-card" },
        h("strong", {}, "经营者 Operator "), h("code", {}, o.code), " · ", o.name, " · ", o.kind, " · ", o.region,
        o.parent ? ` · 上级 parent ${o.parent}` : "", " · ", o.status);
      const list = h("ul", {});
      card.append(h("div", {}, "相关预警 Alerts about it:"), list);
      out.append(card);
      try {
        const page = await api(`/console/api/alerts${q({ operator: o.code, limit: 20 })}`);
        for (const a of page.items) list.append(h("li", {}, h("code", {}, a.rule), " ", statusLabel(a.status), " · ", (a.message || {}).zh || ""));
        if (!page.items.length) list.append(h("li", {}, "无 none"));
      } catch (error) {
        list.append(h("li", {}, error.message));
      }
    }
    if (found.lot) {
      const l = found.lot;
      out.append(h("div", { class: "result-card" }, h("strong", {}, "批次 Lot "), h("code", {}, l.code), " · ",
        kindLabel(l.kind), " · ", l.product_name || "", " · ", holder(l.holder_name, l.holder), " · ", statusLabel(l.status)));
      await traceLot(l.code);
    }
  }

  // -- lineage: graph and table --------------------------------------------------------------------
  function ranks(lots, edges) {
    const parents = new Map(lots.map((l) => [l.code, []]));
    for (const e of edges) if (parents.has(e.to) && parents.has(e.from)) parents.get(e.to).push(e.from);
    const rank = new Map();
    const visiting = new Set();
    const visit = (code) => {
      if (rank.has(code)) return rank.get(code);
      if (visiting.has(code)) return 0; // a cycle in bad data: stop here
      visiting.add(code);
      let r = 0;
      for (const p of parents.get(code) || []) r = Math.max(r, visit(p) + 1);
      visiting.delete(code);
      rank.set(code, r);
      return r;
    };
    for (const l of lots) visit(l.code);
    return { rank, parents };
  }

  function drawGraph(trace) {
    const box = clear($("graph"));
    const lots = trace.lots || [];
    const edges = trace.edges || [];
    if (!lots.length) return;
    const { rank, parents } = ranks(lots, edges);
    const columns = [];
    for (const l of lots) {
      const r = rank.get(l.code);
      (columns[r] = columns[r] || []).push(l);
    }
    // Order each column by where its parents sit, so lines cross less (barycentre).
    const row = new Map();
    columns.forEach((col, ci) => {
      const key = (l) => {
        const ps = (parents.get(l.code) || []).filter((p) => row.has(p));
        return ci === 0 || !ps.length ? 0 : ps.reduce((sum, p) => sum + row.get(p), 0) / ps.length;
      };
      col.sort((a, b) => key(a) - key(b) || a.code.localeCompare(b.code));
      col.forEach((l, i) => row.set(l.code, i));
    });
    const W = 200, H = 62, GX = 64, GY = 18, PAD = 16;
    const tallest = Math.max(...columns.map((c) => c.length));
    const width = PAD * 2 + columns.length * W + (columns.length - 1) * GX;
    const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
    const pos = new Map();
    columns.forEach((col, ci) => {
      const offset = ((tallest - col.length) * (H + GY)) / 2;
      col.forEach((l, i) => pos.set(l.code, { x: PAD + ci * (W + GX), y: PAD + offset + i * (H + GY) }));
    });
    const svg = s("svg", {
      width, height, viewBox: `0 0 ${width} ${height}`, role: "img", id: "lineage-svg",
      "aria-label": `批次关系图 lineage graph of ${trace.root}: ${lots.length} lots, ${edges.length} links`,
    });
    svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow" }))));
    for (const e of edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(s("path", { class: "edge", d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to }));
      const amount = e.kg !== null && e.kg !== undefined ? `${kg(e.kg)} kg` : e.head ? `${e.head} 头 head` : "";
      if (amount) svg.append(s("text", { class: "edge-label", x: mx, y: (y1 + y2) / 2 - 4, "text-anchor": "middle" }, amount));
    }
    for (const l of lots) {
      const p = pos.get(l.code);
      const classes = ["node", l.status, l.code === trace.root ? "root" : ""].filter(Boolean).join(" ");
      const who = l.holder_name || l.holder || "";
      const details = [l.code, kindLabel(l.kind), l.product_name || "", holder(l.holder_name, l.holder), statusLabel(l.status),
        `kg on hand ${kg(l.kg_on_hand)}`].filter(Boolean).join(" · ");
      const node = s("g", {
        class: classes, transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button", "data-code": l.code,
        "data-status": l.status, "aria-label": details,
        onclick: () => traceLot(l.code),
        onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); traceLot(l.code); } },
      },
      s("title", {}, details),
      s("rect", { width: W, height: H, rx: 8, ry: 8 }),
      s("text", { class: "code-label", x: 10, y: 18 }, cut(l.code, 24)),
      s("text", { class: "sub-label", x: 10, y: 35 }, cut(`${kindLabel(l.kind).split(" ")[0]} · ${who}`, 26)),
      s("text", { class: "status-label", x: 10, y: 52 }, cut(`${statusLabel(l.status)} · ${kg(l.kg_on_hand)} kg`, 28)));
      svg.append(node);
    }
    // Shrinks to fit a wide screen, but not below a readable size: a narrow screen scrolls instead.
    svg.style.maxWidth = `${width}px`;
    svg.style.minWidth = `${Math.min(width, 640)}px`;
    box.append(svg);
    $("graph-legend").hidden = false;
  }

  function traceTable(trace) {
    const body = clear($("trace-rows"));
    for (const l of trace.lots || []) {
      const head = l.head ? `${l.head.on_hand}/${l.head.in}` : "";
      body.append(h("tr", { class: l.status === "stopped" ? "stopped" : null, "data-code": l.code },
        h("td", { class: "num" }, l.depth), h("td", {}, h("code", {}, l.code)), h("td", {}, kindLabel(l.kind)),
        h("td", {}, l.product_name || l.product_code || ""), h("td", { class: "holder" }, holder(l.holder_name, l.holder)),
        h("td", {}, statusLabel(l.status)), h("td", { class: "num" }, kg(l.kg_in)), h("td", { class: "num" }, kg(l.kg_on_hand)),
        h("td", { class: "num" }, head), h("td", {}, time(l.created_at))));
    }
    $("trace-table").hidden = false;
  }

  async function traceLot(code) {
    code = String(code).trim().toUpperCase();
    $("trace-input").value = code;
    $("trace-code").textContent = code;
    setStatus("trace-status", "追溯中 Tracing…");
    clear($("graph"));
    try {
      const trace = await api(`/console/api/lots/${seg(code)}/trace${q({ direction: $("trace-direction").value })}`);
      const stopped = (trace.lots || []).filter((l) => l.status === "stopped").length;
      setStatus("trace-status", `${(trace.lots || []).length} 个批次 lots · ${(trace.edges || []).length} 条关系 links` +
        (stopped ? ` · ${stopped} 个已暂停 stopped` : ""));
      drawGraph(trace);
      traceTable(trace);
      $("trace-title").focus();
    } catch (error) {
      setStatus("trace-status", error.status === 404 ? `未找到 No lot ${code}` : `追溯失败 Failed: ${error.message}`, true);
      $("trace-table").hidden = true;
      $("graph-legend").hidden = true;
      return;
    }
    await loadRecall(code);
  }

  // -- recall ---------------------------------------------------------------------------------------
  async function loadRecall(code) {
    $("recall-code").textContent = code;
    setStatus("recall-status", "加载中 Loading…");
    const link = $("recall-csv");
    try {
      const recall = await api(`/console/api/lots/${seg(code)}/recall`);
      const t = recall.totals || {};
      setStatus("recall-status", "");
      $("recall-totals").textContent = `下游 ${t.lots || 0} 个批次、${t.sales || 0} 笔销售；在库 ${kg(t.kg_on_hand)} kg，已售 ${kg(t.kg_sold)} kg · ` +
        `Downstream: ${t.lots || 0} lots, ${t.sales || 0} sales; ${kg(t.kg_on_hand)} kg on hand, ${kg(t.kg_sold)} kg sold`;
      const holders = clear($("recall-holder-rows"));
      for (const o of recall.holders || []) {
        holders.append(h("tr", {}, h("td", {}, holder(o.name, o.code)), h("td", {}, o.kind || ""), h("td", {}, o.parent || ""),
          h("td", { class: "num" }, o.lots), h("td", { class: "num" }, kg(o.kg_on_hand)), h("td", { class: "num" }, kg(o.kg_sold))));
      }
      const rows = clear($("recall-rows"));
      for (const l of recall.lots || []) {
        rows.append(h("tr", { class: l.status === "stopped" ? "stopped" : null },
          h("td", {}, h("code", {}, l.code)), h("td", {}, kindLabel(l.kind)), h("td", {}, l.product_name || ""),
          h("td", {}, holder(l.holder_name, l.holder)), h("td", {}, statusLabel(l.status)),
          h("td", { class: "num" }, kg(l.kg_on_hand)), h("td", { class: "num" }, kg(l.kg_sold)), h("td", {}, time(l.sold_at))));
      }
      $("recall-holders").hidden = false;
      $("recall-table").hidden = false;
      link.setAttribute("href", `/console/api/lots/${seg(code)}/recall.csv`);
      link.setAttribute("download", `recall-${code}.csv`);
      link.hidden = false;
    } catch (error) {
      setStatus("recall-status", `召回清单失败 Recall failed: ${error.message}`, true);
      link.hidden = true;
    }
  }

  // -- supply charts --------------------------------------------------------------------------------
  function chart(series) {
    const measure = series.product === "PIG-LIVE" ? "head" : "kg_received";
    const unit = measure === "head" ? "头 head" : "kg";
    const days = series.days || [];
    const W = 720, H = 240, L = 56, R = 16, T = 28, B = 34;
    const values = [];
    for (const d of days) {
      values.push(Number(d[measure] || 0));
      const b = d.baseline && d.baseline[measure];
      if (b) values.push(Number(b.high || b.value || 0), Number(b.value || 0));
      if (measure !== "head") values.push(Number(d.kg_sold || 0));
    }
    const max = Math.max(1, ...values) * 1.1;
    const x = (i) => L + (days.length > 1 ? (i * (W - L - R)) / (days.length - 1) : (W - L - R) / 2);
    const y = (v) => T + (H - T - B) * (1 - Number(v || 0) / max);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "supply-chart",
      "aria-label": `${series.product} · ${series.market_name || series.market}: 每日 ${unit}，基线带与预警日 daily ${unit} with the baseline band and alert days` });
    for (const f of [0, 0.5, 1]) {
      svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(max * f / 1.1), y2: y(max * f / 1.1) }));
      svg.append(s("text", { class: "tick", x: L - 6, y: y(max * f / 1.1) + 4, "text-anchor": "end" }, kg(Math.round(max * f / 1.1))));
    }
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    // The baseline band (low..high) and the baseline, in runs of days that have one.
    // A lone day with a baseline (the usual case: only the same weekday has one) is a bar.
    const step = days.length > 1 ? (W - L - R) / (days.length - 1) : 40;
    let run = [];
    const flush = () => {
      const top = (b) => y(b.high === null ? b.value : b.high);
      if (run.length === 1) {
        const [i, b] = run[0];
        const half = Math.max(3, step * 0.35);
        svg.append(s("rect", { class: "band", x: x(i) - half, width: half * 2, y: top(b), height: Math.max(1, y(b.low) - top(b)) }));
        svg.append(s("line", { class: "baseline", x1: x(i) - half, x2: x(i) + half, y1: y(b.value), y2: y(b.value) }));
      } else if (run.length > 1) {
        const upper = run.map(([i, b]) => `${x(i)},${top(b)}`);
        const lower = run.slice().reverse().map(([i, b]) => `${x(i)},${y(b.low)}`);
        svg.append(s("polygon", { class: "band", points: [...upper, ...lower].join(" ") }));
        svg.append(s("polyline", { class: "baseline", points: run.map(([i, b]) => `${x(i)},${y(b.value)}`).join(" ") }));
      }
      run = [];
    };
    days.forEach((d, i) => {
      const b = d.baseline && d.baseline[measure];
      if (b && b.value !== null) run.push([i, b]); else flush();
    });
    flush();
    if (measure !== "head") svg.append(s("polyline", { class: "sold", points: days.map((d, i) => `${x(i)},${y(d.kg_sold)}`).join(" ") }));
    svg.append(s("polyline", { class: "series", points: days.map((d, i) => `${x(i)},${y(d[measure])}`).join(" ") }));
    days.forEach((d, i) => {
      const alertsOfDay = d.alerts || [];
      const label = `${d.day}: ${kg(d[measure])} ${unit}` + (alertsOfDay.length ? ` · 预警 alerts: ${alertsOfDay.map((a) => `${a.rule} ${a.level || ""}`).join(", ")}` : "");
      if (alertsOfDay.length) {
        svg.append(s("circle", { class: "alert-day", cx: x(i), cy: y(d[measure]), r: 6, "data-day": d.day }, s("title", {}, label)));
        svg.append(s("path", { class: "alert-mark", d: `M ${x(i) - 6} ${T - 14} L ${x(i) + 6} ${T - 14} L ${x(i)} ${T - 4} z` }, s("title", {}, label)));
      } else {
        svg.append(s("circle", { class: "point", cx: x(i), cy: y(d[measure]), r: 2.5 }, s("title", {}, label)));
      }
    });
    const ticks = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])].filter((i) => i >= 0);
    for (const i of ticks) {
      const anchor = i === 0 && days.length > 1 ? "start" : i === days.length - 1 && days.length > 1 ? "end" : "middle";
      svg.append(s("text", { class: "tick", x: x(i), y: H - B + 16, "text-anchor": anchor }, days[i].day));
    }
    const legend = [["series", `收货 received ${unit}`], ["sold", "销售 sold kg"], ["baseline", "基线 baseline"], ["band", "正常带 band"], ["alert-day", "预警日 alert day"]];
    legend.forEach(([cls, text], i) => {
      const lx = L + i * 130;
      svg.append(cls === "band" || cls === "alert-day" ? s("rect", { class: cls, x: lx, y: 6, width: 14, height: 10 }) : s("line", { class: cls, x1: lx, x2: lx + 14, y1: 11, y2: 11 }));
      svg.append(s("text", { class: "legend-text", x: lx + 18, y: 15 }, text));
    });

    const table = h("table", { class: "data" }, h("thead", {}, h("tr", {},
      ...["日期 Day", `收货 ${unit}`, "基线 Baseline", "带 Band", "销售 kg sold", "均价 Avg price", "预警 Alerts"].map((t) => h("th", { scope: "col" }, t)))));
    const body = h("tbody", {});
    for (const d of days) {
      const b = (d.baseline && d.baseline[measure]) || null;
      body.append(h("tr", { class: (d.alerts || []).length ? "stopped" : null }, h("td", {}, d.day), h("td", { class: "num" }, kg(d[measure])),
        h("td", { class: "num" }, b ? kg(b.value) : ""), h("td", {}, b ? `${kg(b.low)} – ${b.high === null ? "" : kg(b.high)}` : ""),
        h("td", { class: "num" }, kg(d.kg_sold)), h("td", { class: "num" }, d.avg_price === null ? "" : kg(d.avg_price)),
        h("td", {}, (d.alerts || []).map((a) => `${a.rule} ${a.level || ""} (${a.status})`).join("; "))));
    }
    table.append(body);
    return h("figure", { class: "chart", "data-product": series.product, "data-market": series.market },
      h("figcaption", {}, `${series.product} · ${series.market_name || series.market} (${series.market})`),
      svg, h("details", {}, h("summary", {}, "数据表 Data table"), h("div", { class: "scroll" }, table)));
  }

  async function loadSupply() {
    const out = clear($("supply-charts"));
    setStatus("supply-status", "加载中 Loading…");
    const params = {
      product: $("supply-product").value.trim(), market: $("supply-market").value.trim(),
      from: $("supply-from").value, to: $("supply-to").value,
    };
    let supply;
    try {
      supply = await api(`/console/api/supply${q(params)}`);
    } catch (error) {
      if (error.status === 404) setStatus("supply-status", "无数据：供应监测尚不可用。No data: supply monitoring is not available.");
      else setStatus("supply-status", `无法显示 Cannot show: ${error.message}`, true);
      return;
    }
    const series = supply.series || [];
    if (!series.length) {
      setStatus("supply-status", `无数据 No data for ${params.product || "any product"} · ${params.market || "any market"} (${supply.from} – ${supply.to})`);
      return;
    }
    setStatus("supply-status", `${supply.from} – ${supply.to} · ${series.length} 个序列 series`);
    for (const one of series) out.append(chart(one));
  }

  // -- wiring ---------------------------------------------------------------------------------------
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("search-input").value.trim()); });
  $("trace-form").addEventListener("submit", (ev) => { ev.preventDefault(); traceLot($("trace-input").value); });
  $("supply-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadSupply(); });
  $("alert-filter").addEventListener("change", () => loadAlerts(false));
  $("alerts-more").addEventListener("click", () => loadAlerts(true));
  // The stream first, then the list: an alert raised in between arrives on the stream.
  connectStream();
  loadAlerts(false);
})();
