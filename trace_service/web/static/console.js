// The regulator console: alert queue (live over Server-Sent Events, filterable by status, rule, severity,
// level, market and product), search, lineage graph, recall list, and the supply board with its drill-downs
// and charts. Written here, no library, served by the service itself.
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

  // -- names: rules, severities, levels (Chinese first) --------------------------------------------
  const RULES = {
    ear_tag_reused: ["耳标重复使用", "ear tag reused"],
    certificate_overused: ["检疫证明超量使用", "certificate overused"],
    certificate_expired: ["检疫证明过期", "certificate expired"],
    origin_outside_zone: ["产地不在防控区", "origin outside the zone"],
    asf_not_released: ["非洲猪瘟检测未放行", "ASF not released"],
    asf_positive: ["非洲猪瘟阳性", "ASF positive"],
    quality_cert_missing: ["缺肉品品质检验合格证", "quality certificate missing"],
    yield_out_of_range: ["出肉率异常", "yield out of range"],
    head_count_mismatch: ["头数不符", "head count mismatch"],
    mass_balance: ["进出量不平衡", "mass balance"],
    shipment_mismatch: ["收发货不符", "shipment mismatch"],
    upstream_missing: ["上游未上报", "upstream missing"],
    time_travel: ["时间先后矛盾", "time travel"],
    stopped_lot_traded: ["暂停批次被交易", "stopped lot traded"],
    test_failed: ["检测不合格", "test failed"],
    compliance_cert_missing: ["缺承诺达标合格证", "compliance certificate missing"],
    shelf_life_exceeded: ["超期销售", "shelf life exceeded"],
    conflicting_duplicate: ["重复事件内容冲突", "conflicting duplicate"],
    not_holder: ["非持有者上报", "not the holder"],
    supply_drop: ["到货量下降", "supply drop"],
    supply_surge: ["到货过剩", "supply glut"],
    price_spike: ["价格上涨", "price spike"],
    stock_out: ["断档脱销", "stock-out"],
    slaughter_drop: ["屠宰量下降", "slaughter drop"],
    emergency_level: ["应急级别变化", "emergency level"],
  };
  const SEVERITIES = { critical: ["严重", "critical"], warning: ["警告", "warning"], info: ["提示", "info"] };
  const LEVELS = { IV: ["一般", "general"], III: ["较大", "significant"], II: ["重大", "major"], I: ["特别重大", "extraordinary"] };
  const ruleName = (rule) => (RULES[rule] || [rule, rule]);
  const levelText = (level) => (level ? `${level}级 ${LEVELS[level] ? LEVELS[level][0] : ""}` : "无级别 none");
  const levelBadge = (level) => h("span", { class: `level level-${level || "none"}`, "data-level": level || "none" }, levelText(level));
  const products = new Map(); // code -> {zh, en}, from the board
  const productName = (code) => {
    const n = products.get(code);
    return n ? n.zh : code;
  };

  // -- the alert queue ----------------------------------------------------------------------------
  const alerts = new Map();
  let alertCursor = null;
  const FILTERS = {
    status: "alert-filter", rule: "filter-rule", severity: "filter-severity", level: "filter-level",
    operator: "filter-market", product: "filter-product",
  };
  function filters() {
    const out = {};
    for (const [name, id] of Object.entries(FILTERS)) out[name] = $(id).value.trim();
    if (out.operator && !/^[0-9A-Z]{6,20}$/.test(out.operator.toUpperCase())) out.operator = "";
    out.operator = out.operator.toUpperCase();
    return out;
  }
  function productOf(alert) {
    const subject = alert.subject || {};
    if (subject.type === "product") return subject.code;
    if (subject.type === "market") return String(subject.code || "").split("/")[1] || "";
    return "";
  }
  // The same test the server applies, for alerts that arrive on the stream.
  function passes(alert, f) {
    return (!f.status || alert.status === f.status) && (!f.rule || alert.rule === f.rule)
      && (!f.severity || alert.severity === f.severity) && (!f.level || alert.level === f.level)
      && (!f.operator || alert.operator === f.operator) && (!f.product || productOf(alert) === f.product);
  }

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
    } else if (subject.type === "market" || subject.type === "product") {
      const [market, product, day] = subject.type === "market" ? String(subject.code).split("/") : ["city", subject.code, ""];
      cell.append(h("button", {
        type: "button", class: "linkish", "data-product": product,
        onclick: () => (market === "city" ? drillProduct(product) : drillMarketProduct(market, product)),
      }, `${productName(product)} · ${market === "city" ? "全市 city" : market}${day ? ` · ${day}` : ""}`));
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
    const [sevZh, sevEn] = SEVERITIES[alert.severity] || [alert.severity, alert.severity];
    const [ruleZh, ruleEn] = ruleName(alert.rule);
    const row = h("tr", { "data-alert-id": alert.id, "data-status": alert.status, "data-rule": alert.rule, class: fresh ? "fresh" : null },
      h("td", {}, time(alert.updated_at || alert.created_at)),
      h("td", {}, h("span", { class: `sev sev-${alert.severity}` }, `${sevZh} ${sevEn}`),
        alert.level || alert.rule === "emergency_level" ? [" ", levelBadge(alert.level)] : null),
      h("td", {}, h("span", { class: "rule-name", title: ruleEn }, ruleZh), h("code", { class: "rule-code" }, alert.rule)),
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
    if (fromStream && MARKET_RULES.has(alert.rule)) scheduleBoard();
    // A new alert that the filters hide stays hidden; one already shown is updated in place.
    if (!known && !passes(alert, filters())) return;
    alerts.set(alert.id, alert);
    renderAlerts(fromStream && !known ? alert.id : null);
  }

  let alertRequest = 0;
  async function loadAlerts(more) {
    // Filters change faster than answers come: only the answer to the latest request is shown.
    const mine = ++alertRequest;
    try {
      const page = await api(`/console/api/queue${q({ ...filters(), cursor: more ? alertCursor : null })}`);
      if (mine !== alertRequest) return;
      if (!more) alerts.clear();
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

  function fillRuleFilter() {
    const select = $("filter-rule");
    for (const [code, [zh, en]] of Object.entries(RULES)) select.append(h("option", { value: code }, `${zh} ${en}`));
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

  // -- supply: the morning board, drill-downs and charts -------------------------------------------
  const MARKET_RULES = new Set(["supply_drop", "supply_surge", "price_spike", "stock_out", "slaughter_drop", "emergency_level"]);
  const CITY = "city";
  let board = null; // the last board answer
  let drilled = null; // {product, supply, stock} of the product drill-down on screen
  const localDay = () => new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai" }).format(new Date());
  const today = () => (board ? board.as_of.slice(0, 10) : localDay());
  const hourNow = () => (board ? Number(board.as_of.slice(11, 13)) : new Date().getHours());
  const addDays = (day, n) => {
    const d = new Date(`${day}T00:00:00Z`);
    d.setUTCDate(d.getUTCDate() + n);
    return d.toISOString().slice(0, 10);
  };
  const pct = (c) => {
    if (c === null || c === undefined) return "";
    const whole = Math.round(c * 100);
    return `${whole > 0 ? "+" : ""}${whole}%`;
  };
  const num = (v, digits = 1) => (v === null || v === undefined ? "—" : Number(v).toLocaleString("zh-CN", { maximumFractionDigits: digits }));
  const price = (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(2)} 元/kg`);
  const cover = (v) => (v === null || v === undefined ? "—" : `${num(v, 1)} 天 days`);
  const unitOf = (product) => (product === "PIG-LIVE" ? { zh: "头", en: "head", measure: "head", verb: "屠宰 slaughtered" }
    : { zh: "kg", en: "kg", measure: "kg_received", verb: "到货 received" });
  const marketLabel = (code, name) => (code === CITY ? "全市 City" : name ? `${name} (${code})` : code);
  const nameOf = (p) => (p.product_name ? `${p.product_name.zh} ${p.product_name.en === p.product_name.zh ? "" : p.product_name.en}`.trim() : p.product);

  // A bullet graph: the band (normal range) shaded, the baseline a tick, the value a bar (red when short,
  // orange for a glut).
  function bullet(value, base, label) {
    if (!base || value === null || value === undefined) return null;
    const W = 240, H = 22;
    const top = Math.max(Number(value), Number(base.high === null ? base.value : base.high), Number(base.value)) * 1.1 || 1;
    const x = (v) => (W * Math.max(0, Number(v))) / top;
    const high = base.high === null ? base.value : base.high;
    const cls = value < base.low ? "value short" : base.high !== null && value > base.high ? "value glut" : "value";
    return s("svg", { class: "bullet", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": label },
      s("title", {}, label),
      s("rect", { class: "track", x: 0, y: 4, width: W, height: 14 }),
      s("rect", { class: "band", x: x(base.low), y: 4, width: Math.max(1, x(high) - x(base.low)), height: 14 }),
      s("rect", { class: cls, x: 0, y: 8, width: Math.max(1, x(value)), height: 6 }),
      s("line", { class: "base", x1: x(base.value), x2: x(base.value), y1: 1, y2: 21, "vector-effect": "non-scaling-stroke" }));
  }

  function comparison(label, value, base, unit) {
    const text = base ? `${num(value)} ${unit} · 基线 baseline ${num(base.value)} (${pct(base.change)})` : `${num(value)} ${unit} · 无基线 no baseline`;
    return [h("dt", {}, label), h("dd", {}, text, bullet(value, base, `${label}: ${text}`))];
  }

  function behindText(p) {
    const behind = (p.alerts || []).filter((a) => a.behind);
    const rules = [...new Set(behind.map((a) => ruleName(a.rule)[0]))].join("、");
    const reach = p.city_wide ? "全市性预警 city-wide" : `${(p.markets || []).length} 个市场 markets`;
    return behind.length ? `依据 Behind: ${reach} · ${rules} · ${behind.length} 条预警 alerts` : "";
  }

  function boardCard(p) {
    const u = unitOf(p.product);
    const t = p.today || {}, y = p.yesterday || {};
    const hour = String(t.through_hour).padStart(2, "0");
    const rows = [
      ...(t.through_hour > 0 ? comparison(`今日截至 ${hour}:00 Today by ${hour}:00`, t.value_by_hour, t.same_hours, u.zh)
        : [h("dt", {}, "今日 Today"), h("dd", {}, "尚无完整小时 no full hour yet")]),
      ...comparison(`昨日 Yesterday ${y.day || ""}`, y.value, y.baseline, u.zh),
      h("dt", {}, "库存 Stock"), h("dd", {}, p.stock ? `${num(p.stock.kg_on_hand)} kg · 可供 ${cover(p.stock.days_of_cover)}` : "—"),
      h("dt", {}, "均价 Avg price"), h("dd", {}, `${price(y.avg_price)}（昨日 yesterday）`),
    ];
    return h("article", { class: `board-card at-${p.level}`, "data-product": p.product, "data-level": p.level },
      h("h3", {}, h("span", {}, nameOf(p)), levelBadge(p.level)),
      h("span", { class: "code" }, p.product, p.since ? ` · 自 since ${time(p.since)}` : ""),
      h("dl", {}, ...rows),
      h("p", { class: "why" }, behindText(p)),
      h("div", { class: "actions" }, h("button", { type: "button", class: "drill-product", onclick: () => drillProduct(p.product) },
        "查看明细 Details")));
  }

  function otherRow(p) {
    const u = unitOf(p.product);
    const t = p.today || {}, y = p.yesterday || {};
    return h("tr", { "data-product": p.product },
      h("th", { scope: "row" }, h("button", { type: "button", class: "linkish", onclick: () => drillProduct(p.product) }, nameOf(p)),
        h("span", { class: "rule-code" }, p.product)),
      h("td", { class: "num" }, `${num(y.value)} ${u.zh}`),
      h("td", { class: "num" }, y.baseline ? pct(y.baseline.change) : "—"),
      h("td", { class: "num" }, t.through_hour > 0 ? `${num(t.value_by_hour)} ${u.zh}` : "—"),
      h("td", { class: "num" }, p.stock ? num(p.stock.kg_on_hand) : "—"),
      h("td", { class: "num" }, p.stock ? cover(p.stock.days_of_cover) : "—"),
      h("td", { class: "num" }, price(y.avg_price)));
  }

  async function loadBoard() {
    try {
      board = await api("/console/api/market/board");
    } catch (error) {
      setStatus("board-status", `总览加载失败 Could not load the board: ${error.message}`, true);
      return;
    }
    const atLevel = board.products.filter((p) => p.level);
    const others = board.products.filter((p) => !p.level);
    for (const p of board.products) products.set(p.product, p.product_name);
    const cards = clear($("board"));
    for (const p of atLevel) cards.append(boardCard(p));
    if (!atLevel.length) cards.append(h("p", { class: "status" }, "目前没有品种处于应急级别。No product is at an emergency level."));
    const rows = clear($("board-other-rows"));
    for (const p of others) rows.append(otherRow(p));
    setStatus("board-status", `${board.as_of.replace("T", " ").slice(0, 16)} · ${atLevel.length} 个品种处于应急级别 at a level · ` +
      `${others.length} 个其他品种 other products · 预警窗口 window ${board.window.from} – ${board.window.to}`);
    // The product lists of the queue filter and the query form.
    const select = $("filter-product");
    const chosen = select.value;
    clear(select).append(h("option", { value: "" }, "全部 all"));
    const list = clear($("product-names"));
    for (const p of board.products) {
      select.append(h("option", { value: p.product }, `${p.product_name.zh} ${p.product}`));
      list.append(h("option", { value: p.product }, p.product_name.zh));
    }
    select.value = chosen;
    renderAlerts(); // the queue names products now that their names are known
  }

  let boardTimer = null;
  function scheduleBoard() {
    if (boardTimer) return;
    boardTimer = setTimeout(() => { boardTimer = null; loadBoard(); }, 1500);
  }

  // -- charts: one series (a product at a market or the city) ---------------------------------------
  function chart(series, ctx) {
    const u = unitOf(series.product);
    const measure = u.measure;
    const days = series.days || [];
    const day0 = ctx.today;
    const finished = days.map((d, i) => [d, i]).filter(([d]) => d.day !== day0 && d.day < day0);
    const current = days.findIndex((d) => d.day === day0);
    const W = 720, H = 250, L = 60, R = 20, T = 26, B = 34;
    const values = [];
    for (const d of days) {
      values.push(Number(d[measure] || 0));
      const b = d.baseline && d.baseline[measure];
      if (b) values.push(Number(b.high === null ? b.value : b.high), Number(b.value || 0));
      if (measure !== "head") values.push(Number(d.kg_sold || 0));
    }
    const max = Math.max(1, ...values) * 1.1;
    const x = (i) => L + (days.length > 1 ? (i * (W - L - R)) / (days.length - 1) : (W - L - R) / 2);
    const y = (v) => T + (H - T - B) * (1 - Number(v || 0) / max);
    const title = `${productName(series.product)} · ${marketLabel(series.market, series.market_name)}`;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "supply-chart",
      "aria-label": `${title}: 每日${u.verb} ${u.zh}/日，基线带与预警日 daily ${u.en} with the baseline band and alert days` });
    for (const f of [0, 0.5, 1]) {
      const v = (max * f) / 1.1;
      svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      svg.append(s("text", { class: "tick", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, num(Math.round(v), 0)));
    }
    svg.append(s("text", { class: "axis-title", x: L, y: 12 }, `${u.zh}/日 ${u.en} per day`));
    svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    // The band and the baseline, in runs of days that have one; a lone day is a bar.
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
    // Finished days only: the day in progress is not part of the line (it would read as a drop).
    if (measure !== "head") svg.append(s("polyline", { class: "sold", points: finished.map(([d, i]) => `${x(i)},${y(d.kg_sold)}`).join(" ") }));
    svg.append(s("polyline", { class: "series", points: finished.map(([d, i]) => `${x(i)},${y(d[measure])}`).join(" ") }));
    const alertText = (list) => list.map((a) => `${ruleName(a.rule)[0]} ${a.level ? `${a.level}级` : ""}`).join("、");
    days.forEach((d, i) => {
      const list = d.alerts || [];
      const isToday = i === current;
      const label = `${d.day}${isToday ? ` 今日截至 ${String(ctx.hour).padStart(2, "0")}:00 so far` : ""}: ${num(d[measure])} ${u.zh}` +
        (list.length ? ` · 预警 alerts: ${alertText(list)}` : "");
      if (list.length) {
        svg.append(s("circle", { class: "alert-day", cx: x(i), cy: y(d[measure]), r: 6, "data-day": d.day }, s("title", {}, label)));
        svg.append(s("path", { class: "alert-mark", d: `M ${x(i) - 6} ${T - 12} L ${x(i) + 6} ${T - 12} L ${x(i)} ${T - 3} z` }, s("title", {}, label)));
      } else if (!isToday) {
        svg.append(s("circle", { class: "point", cx: x(i), cy: y(d[measure]), r: 2.5 }, s("title", {}, label)));
      }
      if (isToday) {
        svg.append(s("circle", { class: "today-point", cx: x(i), cy: y(d[measure]), r: 5, "data-day": d.day }, s("title", {}, label)));
        svg.append(s("text", { class: "today-label", x: x(i) - 8, y: y(d[measure]) - 9, "text-anchor": "end" },
          `今日截至 ${String(ctx.hour).padStart(2, "0")}:00 so far`));
      }
    });
    const ticks = [...new Set([0, Math.floor((days.length - 1) / 2), days.length - 1])].filter((i) => i >= 0 && days[i]);
    for (const i of ticks) {
      const anchor = i === 0 && days.length > 1 ? "start" : i === days.length - 1 && days.length > 1 ? "end" : "middle";
      svg.append(s("text", { class: "tick", x: x(i), y: H - B + 16, "text-anchor": anchor }, days[i].day.slice(5)));
    }
    // The legend is HTML beside the drawing: it wraps on a narrow screen and never overlaps the lines.
    const legend = h("ul", { class: "legend-list" },
      h("li", {}, h("span", { class: "swatch swatch-received" }), `${u.verb} ${u.zh}/日`),
      measure !== "head" ? h("li", {}, h("span", { class: "swatch swatch-sold" }), "零售 sold kg/日") : null,
      h("li", {}, h("span", { class: "swatch swatch-baseline" }), "同星期基线 same-weekday baseline"),
      h("li", {}, h("span", { class: "swatch swatch-band" }), "正常带 normal band"),
      h("li", {}, h("span", { class: "swatch swatch-alert" }), "预警日 alert day"),
      current >= 0 ? h("li", {}, h("span", { class: "swatch swatch-today" }), "今日截至目前（未完） today so far, unfinished") : null);

    const table = h("table", { class: "data" }, h("thead", {}, h("tr", {},
      ...["日期 Day", `${u.verb} ${u.zh}`, "基线 Baseline", "正常带 Band", "零售 kg sold", "均价 元/kg Avg price", "预警 Alerts"]
        .map((text) => h("th", { scope: "col" }, text)))));
    const body = h("tbody", {});
    for (const d of days.slice().reverse()) {
      const b = (d.baseline && d.baseline[measure]) || null;
      body.append(h("tr", { class: (d.alerts || []).length ? "stopped" : null },
        h("td", {}, d.day === day0 ? `${d.day} 今日截至 so far` : d.day), h("td", { class: "num" }, num(d[measure])),
        h("td", { class: "num" }, b ? num(b.value) : ""), h("td", {}, b ? `${num(b.low)} – ${b.high === null ? "" : num(b.high)}` : ""),
        h("td", { class: "num" }, num(d.kg_sold)), h("td", { class: "num" }, d.avg_price === null ? "" : Number(d.avg_price).toFixed(2)),
        h("td", {}, (d.alerts || []).map((a) => `${ruleName(a.rule)[0]} ${a.level || ""} (${statusLabel(a.status)})`).join("; "))));
    }
    table.append(body);
    return h("figure", { class: "chart", "data-product": series.product, "data-market": series.market },
      h("figcaption", {}, title), svg, legend,
      h("details", {}, h("summary", {}, "数据表 Data table"), h("div", { class: "scroll" }, table)));
  }

  // -- drill-downs ------------------------------------------------------------------------------------
  function crumbs(...parts) {
    const nav = clear($("drill-crumbs"));
    nav.append(h("button", { type: "button", class: "secondary", onclick: () => { $("drill").hidden = true; $("board-title").scrollIntoView(); } }, "总览 Board"));
    for (const [label, fn] of parts) {
      nav.append(" › ");
      nav.append(fn ? h("button", { type: "button", class: "secondary", onclick: fn }, label) : h("span", {}, label));
    }
  }

  function openDrill(title) {
    $("drill").hidden = false;
    $("drill-title").textContent = title;
    clear($("drill-chart"));
    clear($("drill-detail"));
    clear($("drill-head"));
    clear($("drill-rows"));
    $("drill-table").hidden = true;
    $("drill-title").focus();
  }

  const dayOf = (series, day) => (series.days || []).find((d) => d.day === day) || null;
  const ctxNow = () => ({ today: today(), hour: hourNow() });

  function seriesFigures(series, measure) {
    const t = dayOf(series, today()), yd = dayOf(series, addDays(today(), -1));
    const base = yd && yd.baseline && yd.baseline[measure];
    const change = base && base.value ? (Number(yd[measure]) - base.value) / base.value : null;
    const recent = (series.days || []).filter((d) => d.day >= addDays(today(), -6)).flatMap((d) => d.alerts || []);
    return { today: t ? t[measure] : null, yesterday: yd ? yd[measure] : null, base, change, alerts: recent };
  }

  function drillTable(head, rows) {
    const thead = clear($("drill-head"));
    thead.append(h("tr", {}, ...head.map((text) => h("th", { scope: "col", class: text.num ? "num" : null }, text.label))));
    const body = clear($("drill-rows"));
    for (const r of rows) body.append(r);
    $("drill-table").hidden = false;
  }

  // The last 30 days of supply and the stock on hand for one product or one market: [supply, held], or null
  // (the drill's status says why) when either could not be read.
  async function drillData(filter) {
    try {
      return await Promise.all([
        api(`/console/api/supply${q({ ...filter, from: addDays(today(), -29), to: today() })}`),
        api(`/console/api/market/stock${q(filter)}`),
      ]);
    } catch (error) {
      setStatus("drill-status", `无法显示 Cannot show: ${error.message}`, true);
      return null;
    }
  }

  async function drillProduct(product) {
    openDrill(`${productName(product)} · 各市场 across markets`);
    crumbs([productName(product), null]);
    setStatus("drill-status", "加载中 Loading…");
    const u = unitOf(product);
    const found = await drillData({ product });
    if (!found) return;
    const [supply, held] = found;
    drilled = { product, supply };
    const stockOf = new Map();
    for (const p of held.products || []) for (const m of p.markets || []) stockOf.set(m.market, m);
    const series = supply.series || [];
    const city = series.find((one) => one.market === CITY);
    const markets = series.filter((one) => one.market !== CITY);
    setStatus("drill-status", `${supply.from} – ${supply.to} · ${markets.length} 个市场 markets`);
    if (city) $("drill-chart").append(chart(city, ctxNow()));
    const rows = markets.map((one) => {
      const f = seriesFigures(one, u.measure);
      const st = stockOf.get(one.market);
      return { one, f, st, key: f.change === null ? 9 : f.change };
    }).sort((a, b) => a.key - b.key || a.one.market.localeCompare(b.one.market));
    drillTable([
      { label: "市场 Market" }, { label: "今日截至 Today so far", num: true }, { label: `昨日 Yesterday ${u.zh}`, num: true },
      { label: "昨日基线 Baseline", num: true }, { label: "较基线 vs baseline", num: true }, { label: "库存 kg Stock", num: true },
      { label: "可供天数 Cover", num: true }, { label: "近7日预警 Alerts, 7 days" },
    ], rows.map(({ one, f, st }) => h("tr", { "data-market": one.market, class: f.alerts.length ? "stopped" : null },
      h("th", { scope: "row" }, h("button", { type: "button", class: "linkish", onclick: () => drillMarketProduct(one.market, product) },
        marketLabel(one.market, one.market_name))),
      h("td", { class: "num" }, num(f.today)), h("td", { class: "num" }, num(f.yesterday)),
      h("td", { class: "num" }, f.base ? num(f.base.value) : "—"), h("td", { class: "num" }, pct(f.change)),
      h("td", { class: "num" }, st ? num(st.kg_on_hand) : "—"), h("td", { class: "num" }, st ? cover(st.days_of_cover) : "—"),
      h("td", {}, [...new Set(f.alerts.map((a) => `${ruleName(a.rule)[0]} ${a.level || ""}`))].join("、")))));
  }

  async function drillMarketProduct(market, product) {
    let series = drilled && drilled.product === product ? (drilled.supply.series || []).find((one) => one.market === market) : null;
    if (!series) {
      await drillProduct(product);
      series = drilled && drilled.product === product ? (drilled.supply.series || []).find((one) => one.market === market) : null;
    }
    const detail = clear($("drill-detail"));
    if (!series) {
      detail.append(h("p", { class: "status" }, `无数据 No data for ${productName(product)} at ${market}`));
      return;
    }
    crumbs([productName(product), () => drillProduct(product)], [marketLabel(market, series.market_name), null]);
    detail.append(h("h3", { tabindex: -1, id: "detail-title" }, `${productName(product)} · ${marketLabel(market, series.market_name)}`),
      chart(series, ctxNow()),
      h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => drillMarket(market) }, "该市场全部品种 All products at this market")));
    $("detail-title").focus();
  }

  async function drillMarket(market) {
    openDrill(`市场 Market ${market}`);
    crumbs([`市场 Market ${market}`, null]);
    setStatus("drill-status", "加载中 Loading…");
    const found = await drillData({ market });
    if (!found) return;
    const [supply, held] = found;
    const series = (supply.series || []).filter((one) => one.market === market);
    const name = series.length ? series[0].market_name : null;
    $("drill-title").textContent = `${marketLabel(market, name)} · 全部品种 all products`;
    crumbs([marketLabel(market, name), null]);
    setStatus("drill-status", `${supply.from} – ${supply.to} · ${series.length} 个品种 products`);
    const stockOf = new Map((held.products || []).map((p) => [p.product, p.markets.find((m) => m.market === market)]));
    drillTable([
      { label: "品种 Product" }, { label: "今日截至 Today so far", num: true }, { label: "昨日 Yesterday", num: true },
      { label: "昨日基线 Baseline", num: true }, { label: "较基线 vs baseline", num: true }, { label: "库存 kg Stock", num: true },
      { label: "可供天数 Cover", num: true }, { label: "近7日预警 Alerts, 7 days" },
    ], series.map((one) => {
      const u = unitOf(one.product);
      const f = seriesFigures(one, u.measure);
      const st = stockOf.get(one.product);
      const show = () => {
        const detail = clear($("drill-detail"));
        detail.append(chart(one, ctxNow()));
      };
      return h("tr", { "data-product": one.product, class: f.alerts.length ? "stopped" : null },
        h("th", { scope: "row" }, h("button", { type: "button", class: "linkish", onclick: show }, `${productName(one.product)} (${one.product})`)),
        h("td", { class: "num" }, num(f.today)), h("td", { class: "num" }, `${num(f.yesterday)} ${u.zh}`),
        h("td", { class: "num" }, f.base ? num(f.base.value) : "—"), h("td", { class: "num" }, pct(f.change)),
        h("td", { class: "num" }, st ? num(st.kg_on_hand) : "—"), h("td", { class: "num" }, st ? cover(st.days_of_cover) : "—"),
        h("td", {}, [...new Set(f.alerts.map((a) => `${ruleName(a.rule)[0]} ${a.level || ""}`))].join("、")));
    }));
  }

  // -- the query form: any product, market and period -----------------------------------------------
  async function loadSupply() {
    const out = clear($("supply-charts"));
    const params = {
      product: $("supply-product").value.trim(), market: $("supply-market").value.trim(),
      from: $("supply-from").value, to: $("supply-to").value,
    };
    if (!params.product && !params.market) {
      setStatus("supply-status", "请选择产品或市场。Choose a product or a market.");
      return;
    }
    setStatus("supply-status", "加载中 Loading…");
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
    // Many series (one product everywhere, or one market's products): the city or the first few; the rest
    // through the drill-down tables.
    const shown = series.length > 6 ? series.filter((one) => one.market === CITY).concat(series.slice(0, 5)) : series;
    for (const one of shown) out.append(chart(one, ctxNow()));
    if (shown.length < series.length) out.append(h("p", { class: "status" }, `另有 ${series.length - shown.length} 个序列，见明细表。${series.length - shown.length} more series: use the drill-down.`));
  }

  // -- wiring ---------------------------------------------------------------------------------------
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("search-input").value.trim()); });
  $("trace-form").addEventListener("submit", (ev) => { ev.preventDefault(); traceLot($("trace-input").value); });
  $("supply-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadSupply(); });
  $("alert-filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadAlerts(false); });
  for (const id of Object.values(FILTERS)) $(id).addEventListener("change", () => loadAlerts(false));
  $("filter-clear").addEventListener("click", () => {
    for (const id of Object.values(FILTERS)) $(id).value = id === "alert-filter" ? "open" : "";
    loadAlerts(false);
  });
  $("alerts-more").addEventListener("click", () => loadAlerts(true));
  fillRuleFilter();
  // The stream first, then the list: an alert raised in between arrives on the stream.
  connectStream();
  loadAlerts(false);
  loadBoard();
})();
