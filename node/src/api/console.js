
// The quorumkv console: every two seconds it reads this node's /v1/status, /v1/ring and
// /metrics (and /v1/admin/layout every tenth second) and shows what the node says. The
// only figures it works out itself are request rates and latency percentiles, as
// differences between /metrics readings over a sliding window.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const FETCH_TIMEOUT_MS = 4000;
  // A staged plan's key and byte counts cost the node a scan of each moving partition.
  const LAYOUT_EVERY = 5;
  const WINDOW_MS = 10000;
  const TOKEN_KEY = "quorumkv.console.token";

  const seen = {
    tick: 0,
    status: null,
    ring: null,
    layout: null,
    scrapes: [], // {at, ops: Map(op -> {total, c4, c5, buckets: Map(le -> cumulative count)})}
    lastOk: 0,
    failingSince: 0,
    failure: null,
    skew: 0, // the node's clock minus ours, in ms, when it is off by more than the Date header's second
    waitingForToken: false,
  };

  const $ = (id) => document.getElementById(id);

  /** An element with attributes (class, title, data-*, …) and children (nodes or text). */
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function replace(parent, ...children) {
    parent.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  }

  // ---- formatting

  const nowOnNode = () => Date.now() + seen.skew;

  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + (s % 60) + " s";
    const hrs = Math.floor(m / 60);
    if (hrs < 48) return hrs + " h " + (m % 60) + " min";
    return Math.floor(hrs / 24) + " d " + (hrs % 24) + " h";
  }

  /** A time the node reported (unix ms) as "for 3 min" or "3 min ago", kept current by the ticker. */
  function since(unixMs, style) {
    if (!unixMs) return h("span", { class: "muted" }, "—");
    const e = h("time", {
      "data-at": unixMs,
      "data-style": style,
      datetime: new Date(unixMs).toISOString(),
      title: new Date(unixMs).toLocaleString(),
    });
    e.textContent = relative(unixMs, style);
    return e;
  }

  function relative(unixMs, style) {
    const d = duration(nowOnNode() - unixMs);
    return style === "for" ? "for " + d : d + " ago";
  }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + " " + units[i];
  }

  function num(n) {
    return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US");
  }

  function rate(n) {
    if (n === null || n === undefined) return "—";
    if (n === 0) return "0";
    return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US");
  }

  function seconds(s) {
    if (s === null || s === undefined || Number.isNaN(s)) return "—";
    if (s === Infinity) return "> 26 s";
    if (s < 0.001) return Math.round(s * 1e6) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms";
    return s.toFixed(2) + " s";
  }

  function millis(ms) {
    return ms === null || ms === undefined ? "—" : seconds(ms / 1000);
  }

  function share(x) {
    return x === null || x === undefined ? "—" : (x * 100).toFixed(x >= 0.999 || x === 0 ? 0 : 1) + " %";
  }

  function facts(dl, pairs) {
    replace(
      dl,
      pairs.filter(Boolean).map(([k, v, attrs]) => [h("dt", {}, k), h("dd", attrs || {}, v)]),
    );
  }

  // ---- talking to the node

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage off: the token lives as long as this page does.
    }
    memoryToken = t;
  }
  let memoryToken = null;

  /** GET `path`, read as JSON or text, within FETCH_TIMEOUT_MS; non-2xx throws HttpError. */
  async function get(path, as) {
    const headers = {};
    const t = token() || memoryToken;
    if (t) headers["Authorization"] = "Bearer " + t;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    try {
      let resp;
      try {
        resp = await fetch(path, { headers, cache: "no-store", signal: abort.signal });
      } catch (e) {
        throw new Error(
          abort.signal.aborted
            ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s"
            : "cannot reach the node (" + e.message + ")",
        );
      }
      noteClock(resp);
      if (!resp.ok) {
        let why = resp.statusText;
        try {
          const body = await resp.json();
          why = body.message || body.error || why;
        } catch (_) {
          // Not JSON: the status line says enough.
        }
        throw new HttpError(resp.status, path + " answered " + resp.status + ": " + why);
      }
      return as === "text" ? await resp.text() : await resp.json();
    } finally {
      clearTimeout(timer);
    }
  }

  /** The node's clock from its Date header, so "for 3 min" is right on a browser whose clock is off. */
  function noteClock(resp) {
    const date = Date.parse(resp.headers.get("date") || "");
    if (Number.isNaN(date)) return;
    const off = date - Date.now();
    // The header has whole seconds: only a larger difference is a skew.
    seen.skew = Math.abs(off) > 1500 ? off : 0;
  }

  /** A 503 (no layout yet) is an answer, not a failure. */
  const nullOn503 = (e) => {
    if (e instanceof HttpError && e.status === 503) return null;
    throw e;
  };

  async function refresh() {
    const started = Date.now();
    seen.tick += 1;
    const wantLayout = seen.layout === null || seen.tick % LAYOUT_EVERY === 1 || !layoutView();
    try {
      const [status, ring, metrics, layout] = await Promise.all([
        get("/v1/status"),
        get("/v1/ring").catch(nullOn503),
        get("/metrics", "text"),
        wantLayout ? get("/v1/admin/layout").catch(nullOn503) : Promise.resolve(seen.layout),
      ]);
      seen.status = status;
      seen.ring = ring;
      seen.layout = layout;
      remember(parseMetrics(metrics));
      seen.lastOk = Date.now();
      seen.failure = null;
      seen.failingSince = 0;
    } catch (e) {
      seen.failure = e;
      if (!seen.failingSince) seen.failingSince = Date.now();
      if (e instanceof HttpError && e.status === 401) {
        askForToken(
          token() || memoryToken
            ? "The token was refused (" + e.message + "). Another one?"
            : "This node's API needs a bearer token: a read-only one is enough to watch.",
        );
        render();
        return; // polling resumes once a token is given
      }
    }
    try {
      render();
    } finally {
      // A surprise in what the node said (reported in the browser's console) must not
      // stop the polling.
      setTimeout(refresh, Math.max(200, REFRESH_MS - (Date.now() - started)));
    }
  }

  function askForToken(why) {
    setToken(null);
    seen.waitingForToken = true;
    $("token-why").textContent = why;
    $("token-form").hidden = false;
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (!t) return;
    setToken(t);
    $("token-input").value = "";
    $("token-form").hidden = true;
    seen.waitingForToken = false;
    refresh();
  });

  // ---- /metrics: request counts and latency histograms per operation

  function parseLabels(s) {
    const out = {};
    const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
    let m;
    while ((m = re.exec(s))) out[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    return out;
  }

  function parseMetrics(text) {
    const ops = new Map();
    const of = (op) => {
      if (!ops.has(op)) ops.set(op, { total: 0, c4: 0, c5: 0, buckets: new Map() });
      return ops.get(op);
    };
    for (const line of text.split("\n")) {
      const m = /^(quorumkv_requests_total|quorumkv_request_duration_seconds_bucket)\{([^}]*)\}\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = parseLabels(m[2]);
      const value = Number(m[3]);
      const op = of(labels.op || "?");
      if (m[1] === "quorumkv_requests_total") {
        op.total += value;
        const status = Number(labels.status);
        if (status >= 500) op.c5 += value;
        else if (status >= 400) op.c4 += value;
      } else {
        // Cumulative per status; their sum over statuses is cumulative too.
        const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
        op.buckets.set(le, (op.buckets.get(le) || 0) + value);
      }
    }
    return ops;
  }

  function remember(ops) {
    const at = Date.now();
    const totalOf = (s) => [...s.ops.values()].reduce((a, o) => a + o.total, 0);
    const scrape = { at, ops };
    // Counters going down: the node restarted, older readings mean nothing now.
    const last = seen.scrapes[seen.scrapes.length - 1];
    if (last && totalOf(scrape) < totalOf(last)) seen.scrapes = [];
    seen.scrapes.push(scrape);
    while (seen.scrapes.length > 2 && at - seen.scrapes[1].at >= WINDOW_MS) seen.scrapes.shift();
  }

  /** The q-quantile of the observations between two cumulative bucket maps. */
  function quantile(q, now, before) {
    const les = [...now.keys()].sort((a, b) => a - b);
    const diff = les.map((le) => now.get(le) - ((before && before.get(le)) || 0));
    const total = diff[diff.length - 1];
    if (!total) return null;
    const target = q * total;
    for (let i = 0; i < les.length; i++) {
      if (diff[i] >= target) {
        if (les[i] === Infinity) return Infinity;
        const lower = i === 0 ? 0 : les[i - 1];
        const below = i === 0 ? 0 : diff[i - 1];
        const inBucket = diff[i] - below;
        return inBucket > 0 ? lower + ((les[i] - lower) * (target - below)) / inBucket : les[i];
      }
    }
    return null;
  }

  // ---- rendering

  function render() {
    const st = seen.status;
    renderFreshness();
    if (!st) return;
    const ring = seen.ring;
    const n = st.replicas;
    const members = st.members || [];
    const primaries = new Map(); // partition -> [node ids], first replica first
    for (const p of (ring && ring.partitions) || []) primaries.set(p.partition, p.preference_list.slice(0, n));
    const pending = (st.workers && st.workers.hinted_handoff && st.workers.hinted_handoff.pending) || {};
    const up = members.filter((m) => m.state === "up").length;

    $("node-name").textContent = st.node_id;
    document.title = "quorumkv · " + st.node_id + " · " + up + "/" + members.length + " up";
    replace(
      $("node-facts"),
      h("span", { class: "muted" }, "client API "),
      h("code", {}, st.api_addr),
      h("span", { class: "muted" }, " · version "),
      st.version,
      h("span", { class: "muted" }, " · up "),
      duration(st.uptime_seconds * 1000),
      h("span", { class: "muted" }, " · N="),
      n,
      h("span", { class: "muted" }, " · partitions "),
      st.partitions,
    );

    renderWarnings(st);
    renderMembers(st, members, primaries, pending, up);
    renderLayout(st);
    renderPartitions(st, members, primaries);
    renderAntiEntropy(st, primaries);
    renderHints(st, pending);
    renderRequests();
    renderStorage(st);
    renderWindowed("replication", st.replication, replicationRows);
    renderWindowed("reads", st.reads, readRows);
  }

  function renderFreshness() {
    const f = $("freshness");
    const banner = $("banner");
    const main = $("main");
    if (seen.waitingForToken) {
      f.dataset.state = "token";
      f.textContent = "waiting for a token";
      return;
    }
    if (seen.failure) {
      f.dataset.state = "stale";
      const last = seen.lastOk ? "last updated " + duration(Date.now() - seen.lastOk) + " ago" : "never updated";
      f.textContent = last;
      banner.hidden = false;
      banner.dataset.state = "unreachable";
      const who = seen.status ? seen.status.node_id + " (" + seen.status.api_addr + ")" : "This node";
      const what = seen.failure instanceof HttpError ? " answers with errors" : " is not answering";
      banner.textContent =
        who + what + " since " + new Date(seen.failingSince).toLocaleTimeString() + ": " +
        seen.failure.message + ". " +
        (seen.status ? "What is shown is what it said " + duration(Date.now() - seen.lastOk) + " ago. " : "") +
        "Retrying every " + REFRESH_MS / 1000 + " s.";
      main.classList.toggle("stale", Boolean(seen.status));
    } else {
      banner.hidden = true;
      banner.dataset.state = "ok";
      main.classList.remove("stale");
      if (seen.lastOk) {
        f.dataset.state = "ok";
        f.dataset.updatedMs = String(seen.lastOk);
        f.textContent = "last updated " + duration(Date.now() - seen.lastOk) + " ago · every " + REFRESH_MS / 1000 + " s";
      }
    }
  }

  function renderWarnings(st) {
    const list = (st.warnings || []).map((w) => h("li", { "data-level": "warn" }, w));
    if (st.layout && st.layout.previous_version !== null && st.layout.previous_version !== undefined) {
      list.push(
        h("li", { "data-level": "info" },
          "layout version " + st.layout.previous_version + " is still live beside " + st.layout.version +
          " while " + st.layout.moving + " partition(s) move"),
      );
    }
    if (!list.length) list.push(h("li", { class: "muted", "data-level": "none" }, "none"));
    replace($("warnings"), list);
    $("warnings-section").dataset.count = String((st.warnings || []).length);
  }

  function renderMembers(st, members, primaries, pending, up) {
    const replicaOf = new Map();
    for (const list of primaries.values()) for (const id of list) replicaOf.set(id, (replicaOf.get(id) || 0) + 1);
    const rows = members.map((m) =>
      h("tr", { "data-node": m.node_id, "data-state": m.state },
        h("td", {}, m.node_id, m.node_id === st.node_id ? h("span", { class: "muted" }, " (this node)") : null),
        h("td", {}, h("span", { class: "badge " + m.state }, m.state)),
        h("td", {}, since(m.since_unix_ms, "for")),
        h("td", {}, h("code", {}, m.api_addr || "—")),
        h("td", {}, m.zone || h("span", { class: "muted" }, "—")),
        h("td", { class: "num" + (m.layout_version != null && st.layout && m.layout_version !== st.layout.version ? " warn" : "") },
          m.layout_version == null ? "—" : String(m.layout_version)),
        h("td", { class: "num" }, replicaOf.has(m.node_id) ? replicaOf.get(m.node_id) : "—"),
        h("td", { class: "num" + (pending[m.node_id] ? " warn" : "") }, num(pending[m.node_id] || 0)),
      ),
    );
    replace($("members").tBodies[0], rows);
    const table = $("members");
    table.dataset.up = String(up);
    table.dataset.total = String(members.length);
    replace($("members-summary"), h("span", { class: up < members.length ? "bad" : "" }, up + " of " + members.length + " up"));
  }

  /** The layout view, when it is of the version in force (a commit makes it stale). */
  function layoutView() {
    const v = seen.layout;
    const st = seen.status;
    return v && st && st.layout && v.version === st.layout.version ? v : null;
  }

  function renderLayout(st) {
    const l = st.layout || {};
    const view = layoutView();
    const dl = $("layout");
    dl.dataset.version = l.version === null || l.version === undefined ? "" : String(l.version);
    facts(dl, [
      ["version", l.version === null || l.version === undefined ? "none yet" : String(l.version)],
      l.digest && ["digest", h("code", {}, l.digest)],
      ["this node", l.member ? "a member" : h("span", { class: "warn" }, "not a member")],
      l.previous_version !== null && l.previous_version !== undefined &&
        ["previous version", h("span", { class: "warn" }, "v" + l.previous_version + " still live, " + l.moving + " partition(s) moving")],
      l.syncing && l.syncing.length > 0 &&
        ["syncing here", h("span", { class: "warn" }, l.syncing.length + " partition(s): " + l.syncing.join(", "))],
      l.conflict && ["conflict", h("span", { class: "bad" }, l.conflict)],
      l.may_stop && ["may stop", "yes: it holds nothing the cluster needs"],
      view && ["staged here", view.staged.length ? view.staged.map(describeChange).join("; ") : h("span", { class: "muted" }, "nothing")],
    ]);
    const plan = view && view.plan;
    const box = $("plan");
    box.dataset.plan = plan ? String(plan.version) : "";
    if (!plan) {
      replace(box);
      return;
    }
    const moves = plan.moves || [];
    const shown = moves.slice(0, 12);
    replace(
      box,
      h("p", {}, "Plan for version " + plan.version + ": " + plan.partitions_moving + " partition(s) move. ",
        h("span", { class: "muted" }, "Commit with POST /v1/admin/layout/commit, or cancel.")),
      h("table", {},
        h("thead", {}, h("tr", {}, h("th", { class: "num" }, "partition"), h("th", {}, "from"), h("th", {}, "to"),
          h("th", { class: "num" }, "keys"), h("th", { class: "num" }, "size"))),
        h("tbody", {}, shown.map((mv) =>
          h("tr", { "data-partition": mv.partition },
            h("td", { class: "num" }, mv.partition), h("td", {}, mv.from.join(", ")), h("td", {}, mv.to.join(", ")),
            h("td", { class: "num" }, num(mv.keys)), h("td", { class: "num" }, bytes(mv.bytes))),
        )),
      ),
      moves.length > shown.length ? h("p", { class: "muted" }, "and " + (moves.length - shown.length) + " more") : null,
    );
  }

  function describeChange(c) {
    const id = (x) => (x && typeof x === "object" ? x.node_id : x);
    if (c.op === "replace") return "replace " + id(c.old) + " with " + id(c.new);
    return c.op + " " + id(c.node);
  }

  function renderPartitions(st, members, primaries) {
    const table = $("partitions");
    const count = st.partitions;
    if (!primaries.size) {
      replace(table, h("tbody", {}, h("tr", {}, h("td", { class: "muted" }, "no layout yet"))));
      return;
    }
    const state = new Map(members.map((m) => [m.node_id, m.state]));
    const syncing = new Set((st.layout && st.layout.syncing) || []);
    const gains = new Map(); // "node/partition" -> "gain" | "lose"
    const view = layoutView();
    const plan = view && view.plan;
    for (const mv of (plan && plan.moves) || []) {
      for (const id of mv.to) gains.set(id + "/" + mv.partition, "gain");
      for (const id of mv.from) gains.set(id + "/" + mv.partition, "lose");
    }
    const rowIds = members.map((m) => m.node_id);
    for (const list of primaries.values()) for (const id of list) if (!rowIds.includes(id)) rowIds.push(id);
    const planOnly = new Set();
    for (const m of (plan && plan.members) || []) {
      const id = typeof m === "object" ? m.node_id : m;
      if (!rowIds.includes(id)) {
        rowIds.push(id);
        planOnly.add(id);
      }
    }
    const aae = (st.workers && st.workers.anti_entropy && st.workers.anti_entropy.partitions) || {};
    const mine = new Set([...primaries].filter(([, list]) => list.includes(st.node_id)).map(([p]) => p));
    const partitions = [...Array(count).keys()];

    const head = h("tr", {}, h("th", { class: "row" }, "partition"),
      partitions.map((p) => h("th", { class: syncing.has(p) ? "syncing" : null, title: "partition " + p }, p % 8 === 0 ? p : "")));
    const rows = rowIds.map((id) =>
      h("tr", { "data-node": id, "data-state": state.get(id) || "unknown" },
        h("th", { class: "row", title: planOnly.has(id) ? "not a member yet: in the staged plan" : null },
          id, planOnly.has(id) ? " (plan)" : null),
        partitions.map((p) => {
          const list = primaries.get(p) || [];
          const rank = list.indexOf(id) + 1;
          const move = gains.get(id + "/" + p);
          const classes = [];
          if (rank) classes.push(state.get(id) === "down" ? "on-down" : rank === 1 ? "r1" : "r2");
          if (rank && id === st.node_id && syncing.has(p)) classes.push("syncing");
          if (move) classes.push(move);
          let title = "partition " + p + ": ";
          title += rank ? "replica " + rank + " of " + list.length + " on " + id + (state.get(id) === "down" ? " (down)" : "") : "not on " + id;
          if (move === "gain") title += "; gains it in the staged plan";
          if (move === "lose") title += "; loses it in the staged plan";
          return h("td", { class: classes.join(" ") || null, "data-partition": p, "data-rank": rank || null, title },
            rank ? (move === "lose" ? "−" : rank) : move === "gain" ? "+" : "");
        }),
      ),
    );
    let short = 0;
    let lost = 0;
    const upRow = h("tr", { "data-row": "replicas-up" }, h("th", { class: "row" }, "replicas up"),
      partitions.map((p) => {
        const list = primaries.get(p) || [];
        const upCount = list.filter((id) => state.get(id) === "up").length;
        const cls = upCount === list.length ? "count-full" : upCount === 0 ? "count-lost" : "count-short";
        if (upCount < list.length) short += 1;
        if (upCount === 0) lost += 1;
        return h("td", { class: cls, "data-partition": p, "data-up": upCount, title: "partition " + p + ": " + upCount + " of " + list.length + " replicas up" }, upCount);
      }));
    const aaeRow = h("tr", { "data-row": "anti-entropy" }, h("th", { class: "row" }, "anti-entropy"),
      partitions.map((p) => {
        if (!mine.has(p)) return h("td", { "data-partition": p, title: "partition " + p + ": not replicated by this node" });
        const g = aae[String(p)];
        const verdict = aaeVerdict(g, (primaries.get(p) || []).length);
        let title = "partition " + p + ": ";
        if (!g) title += "not exchanged yet";
        else {
          title += "last exchange " + relative(g.last_exchange_unix_ms, "ago") + ", ";
          title += g.peers === undefined ? (g.in_sync ? "roots agreed" : "roots differed") : "roots agreed with " + g.roots_agreed + " of " + g.peers + " peer(s) up";
          title += ", " + num(g.keys_repaired) + " key(s) repaired since start";
        }
        return h("td", { class: "aae-" + verdict, "data-partition": p, "data-aae": verdict, title });
      }));
    replace(table, h("thead", {}, head), h("tbody", {}, rows, upRow, aaeRow));
    replace($("partitions-summary"),
      (short ? h("span", { class: "bad" }, short + " of " + count + " partitions short of replicas" + (lost ? ", " + lost + " with none up" : "")) : "every partition has all its replicas up"),
      " · layout v" + st.layout.version);
  }

  /** How the last exchange of a partition with `replicas` replicas went, from this node. */
  function aaeVerdict(g, replicas) {
    if (replicas === 1) return "alone";
    if (!g) return "never";
    if (g.peers === 0) return "unreached";
    return g.in_sync ? "agreed" : "differed";
  }

  function renderAntiEntropy(st, primaries) {
    const a = (st.workers && st.workers.anti_entropy) || {};
    const parts = Object.entries(a.partitions || {}).map(([p, g]) => Object.assign({ partition: Number(p) }, g));
    const tally = { agreed: 0, differed: 0, unreached: 0, alone: 0 };
    let oldest = null;
    for (const g of parts) {
      tally[aaeVerdict(g, (primaries.get(g.partition) || []).length)] += 1;
      if (oldest === null || g.last_exchange_unix_ms < oldest) oldest = g.last_exchange_unix_ms;
    }
    const repaired = parts.reduce((s, g) => s + (g.keys_repaired || 0), 0);
    const bytesSent = parts.reduce((s, g) => s + (g.bytes || 0), 0);
    facts($("anti-entropy"), [
      ["trees", h("span", { class: a.trees === "ready" ? "" : "warn" }, a.trees || "—")],
      ["last rebuild", since(a.last_rebuild_unix_ms, "ago")],
      ["partitions exchanged", parts.length + " (" + tally.agreed + " agreed, " + tally.differed + " differed, " + tally.unreached + " with no peer up" +
        (tally.alone ? ", " + tally.alone + " with no other replica" : "") + ")",
        { "data-agreed": tally.agreed, "data-differed": tally.differed, "data-unreached": tally.unreached }],
      ["oldest last exchange", oldest ? since(oldest, "ago") : "—"],
      ["keys repaired", num(repaired) + " since start, " + bytes(bytesSent) + " exchanged"],
      ["queued", num(a.queued)],
      ["tombstones reaped", num(a.tombstones_reaped)],
      a.last_error && ["last error", h("span", {}, h("span", { class: "bad" }, a.last_error),
        a.last_error_unix_ms ? h("span", { class: "muted" }, " (", since(a.last_error_unix_ms, "ago"), ")") : null)],
    ]);
  }

  function renderHints(st, pending) {
    const w = (st.workers && st.workers.hinted_handoff) || {};
    const targets = Object.keys(pending).sort();
    const total = targets.reduce((s, t) => s + pending[t], 0);
    facts($("hints-facts"), [
      ["pending", h("span", { class: total ? "warn" : "" }, num(total))],
      ["delivered", num(w.delivered) + " since start"],
      ["expired", h("span", { class: w.expired ? "bad" : "" }, num(w.expired))],
      w.last_error && ["last error", h("span", { class: "bad" }, w.last_error)],
    ]);
    replace($("hints").tBodies[0],
      targets.length
        ? targets.map((t) => h("tr", { "data-target": t }, h("td", {}, t), h("td", { class: "num" }, num(pending[t]))))
        : h("tr", {}, h("td", { class: "muted", colspan: 2 }, "no hints pending")));
  }

  function renderRequests() {
    const scrapes = seen.scrapes;
    const latest = scrapes[scrapes.length - 1];
    if (!latest) return;
    const base = scrapes.length > 1 ? scrapes[0] : null;
    const secs = base ? (latest.at - base.at) / 1000 : 0;
    $("requests-window").textContent = base ? "over the last " + Math.round(secs) + " s" : "measuring…";
    const order = ["get", "put", "delete"];
    const ops = [...latest.ops.keys()].sort((a, b) => {
      const ia = order.indexOf(a) < 0 ? 99 : order.indexOf(a);
      const ib = order.indexOf(b) < 0 ? 99 : order.indexOf(b);
      return ia - ib || a.localeCompare(b);
    });
    const rows = ops.map((op) => {
      const now = latest.ops.get(op);
      const then = base && base.ops.get(op);
      const d = (k) => (base ? (now[k] - (then ? then[k] : 0)) / secs : null);
      const inWindow = base ? now.total - (then ? then.total : 0) : 0;
      const p = (q) => (inWindow > 0 ? seconds(quantile(q, now.buckets, then && then.buckets)) : "—");
      return h("tr", { "data-op": op },
        h("td", {}, op),
        h("td", { class: "num", "data-rate": base ? d("total").toFixed(3) : null }, rate(d("total"))),
        h("td", { class: "num" + (d("c4") > 0 ? " warn" : "") }, rate(d("c4"))),
        h("td", { class: "num" + (d("c5") > 0 ? " bad" : "") }, rate(d("c5"))),
        h("td", { class: "num" }, p(0.5)),
        h("td", { class: "num" }, p(0.99)),
        h("td", { class: "num" }, num(now.total)));
    });
    replace($("requests").tBodies[0], rows.length ? rows : h("tr", {}, h("td", { class: "muted", colspan: 7 }, "no requests yet")));
  }

  function renderStorage(st) {
    const s = st.storage || {};
    facts($("storage"), [
      ["on disk", bytes(s.disk_bytes)],
      ["objects (approximate)", num(s.approximate_objects)],
      ["corrupt records", h("span", { class: s.corrupt_records ? "bad" : "" }, num(s.corrupt_records)), { "data-corrupt": s.corrupt_records || 0 }],
      ["partitions held here", num(st.partitions_owned) + " of " + num(st.partitions)],
    ]);
  }

  /** A windowed figure set (`replication`, `reads`): the window beside `since_start`, when the node reports it. */
  function renderWindowed(id, data, rowsOf) {
    const section = $(id + "-section");
    if (!data || typeof data !== "object") {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    const start = data.since_start && typeof data.since_start === "object" ? data.since_start : null;
    const head = h("tr", {}, h("th", {}, ""),
      h("th", { class: "num" }, data.window_seconds ? "last " + data.window_seconds + " s" : "window"),
      start ? h("th", { class: "num" }, "since start") : null);
    const rows = rowsOf(data, start || {}).map(([label, key, fmt]) =>
      h("tr", { "data-key": key }, h("td", {}, label), h("td", { class: "num" }, fmt(pick(data, key))),
        start ? h("td", { class: "num" }, fmt(pick(start, key))) : null));
    replace($(id), h("thead", {}, head), h("tbody", {}, rows));
  }

  function pick(obj, path) {
    return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
  }

  function replicationRows() {
    return [
      ["writes", "writes", num],
      ["lag p50", "lag_ms.p50", millis],
      ["lag p90", "lag_ms.p90", millis],
      ["lag p99", "lag_ms.p99", millis],
      ["lag max", "lag_ms.max", millis],
      ["lag within 10 ms", "within_10ms", share],
      ["lag within 100 ms", "within_100ms", share],
      ["lag within 1 s", "within_1s", share],
      ["not landed", "not_landed", num],
    ];
  }

  function readRows() {
    return [
      ["quorum reads", "quorum_reads", num],
      ["found a stale replica", "found_stale", num],
      ["repair ratio", "repair_ratio", share],
    ];
  }

  // Relative times and "last updated" move on between refreshes.
  setInterval(() => {
    for (const e of document.querySelectorAll("time[data-at]")) e.textContent = relative(Number(e.dataset.at), e.dataset.style);
    renderFreshness();
  }, 1000);

  refresh();
})();
